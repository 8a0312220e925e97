"""Running as a service: notify protocol, watchdog, SIGHUP reload, unit files, overrides."""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gatewayd.config import parse_config
from gatewayd.errors import ConfigError
from gatewayd.testing import DaemonProcess, run_cli, wait_until

ROOT = Path(__file__).resolve().parent.parent


def datagrams(sock: socket.socket, *, seconds: float) -> list[tuple[float, str]]:
    """Every datagram that arrives within ``seconds``, with its arrival time."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            got.append((time.monotonic(), sock.recv(65536).decode()))
        except TimeoutError:
            break
    return got


class TestNotify:
    def test_ready_watchdog_stopping(self, tmp_path: Path) -> None:
        """READY=1 once serving; WATCHDOG=1 every half of WATCHDOG_USEC; STOPPING=1; exit 0."""
        notify = tmp_path / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAYD_", "NOTIFY_"))}
        env.update(
            NOTIFY_SOCKET=str(notify),
            WATCHDOG_USEC="1000000",
            GATEWAYD_STATE_DIR=str(tmp_path / "state"),
        )
        log = (tmp_path / "log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "serve"], env=env, stdout=log, stderr=log
        )
        try:
            listener.settimeout(20)
            ready = listener.recv(65536).decode().splitlines()
            while "READY=1" not in ready:
                # Before it is ready, the daemon may only say what it is doing.
                assert all(line.startswith("STATUS=") for line in ready), ready
                ready = listener.recv(65536).decode().splitlines()
            assert "READY=1" in ready
            assert f"MAINPID={daemon.pid}" in ready
            assert any(line.startswith("STATUS=0 jobs") for line in ready)
            status = run_cli(["status", "--json"], env=env)
            assert status.code == 0, "the socket listens when READY=1 is sent"
            seen = datagrams(listener, seconds=1.5)
            pings = [t for t, text in seen if "WATCHDOG=1" in text.splitlines()]
            assert len(pings) >= 2, seen
            daemon.send_signal(signal.SIGTERM)
            stopping = wait_until(
                lambda: [m for _, m in datagrams(listener, seconds=1) if "STOPPING=1" in m],
                timeout=20,
                what="STOPPING=1",
            )
            assert stopping
            assert daemon.wait(timeout=20) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            log.close()
            listener.close()


DECLARED = """
[gateway]
kill_grace = "1s"

[[jobs]]
name = "keep"
every = "1d"
shell = "sleep 2; echo kept"

[[jobs]]
name = "{second}"
every = "1h"
command = "true"
"""


class TestReload:
    def test_sighup_reconciles_declared_jobs_and_leaves_runs_alone(self, tmp_path: Path) -> None:
        """SIGHUP adds and removes declared jobs; API jobs and a running run are untouched."""
        d = DaemonProcess(tmp_path / "state", config=DECLARED.format(second="old"))
        try:
            d.start()
            assert (
                d.cli("cron", "add", "--name", "mine", "--every", "1h", "--command", "true").code
                == 0
            )
            run_id = d.call("cron.run", {"job": "keep"})["run_id"]
            running = wait_until(
                lambda: (r := d.call("runs.get", {"run_id": run_id}))["status"] == "running" and r
            )
            config = tmp_path / "state.toml"
            config.write_text(DECLARED.format(second="new"))
            d.signal(signal.SIGHUP)
            names = wait_until(
                lambda: (
                    (n := sorted(j["name"] for j in d.call("cron.list", {"all": True})))
                    == ["keep", "mine", "new"]
                    and n
                ),
                what="the reload",
            )
            assert names == ["keep", "mine", "new"]
            jobs = {j["name"]: j for j in d.call("cron.list", {"all": True})}
            assert jobs["mine"]["source"] == "api"
            assert jobs["new"]["source"] == "config"
            assert jobs["keep"]["running_run_id"] == run_id
            run = wait_until(
                lambda: (r := d.call("runs.get", {"run_id": run_id}))["status"] != "running" and r,
                what="the run to end",
            )
            assert (run["status"], run["pid"], run["output_tail"]) == (
                "succeeded",
                running["pid"],
                "kept\n",
            )
        finally:
            d.close()

    def test_a_bad_config_is_refused_at_start_and_kept_old_at_reload(self, tmp_path: Path) -> None:
        bad = '[gateway]\nmax_concurrent_runs = 4\nkill_grace = "soon"\n'
        refused = DaemonProcess(tmp_path / "refused", config=bad)
        try:
            process = refused.spawn()
            assert process.wait(timeout=20) == 2
            assert "refused.toml:3: gateway.kill_grace" in refused.log()
            assert not (tmp_path / "refused" / "gatewayd.db").exists(), "nothing was changed"
        finally:
            refused.close()

        d = DaemonProcess(tmp_path / "state", config=DECLARED.format(second="old"))
        try:
            d.start()
            (tmp_path / "state.toml").write_text(DECLARED.format(second="new") + "[[jobs]]\n")
            d.signal(signal.SIGHUP)
            wait_until(lambda: "reload refused" in d.log(), what="the reload to be refused")
            assert "jobs[2]" in d.log()
            assert sorted(j["name"] for j in d.call("cron.list", {"all": True})) == [
                "keep",
                "old",
            ]
            assert d.cli("status").code == 0
        finally:
            d.close()


class TestRuntimeDirectory:
    def test_socket_in_the_runtime_directory_linked_from_the_state_dir(
        self, tmp_path: Path
    ) -> None:
        """Under RuntimeDirectory=, the CLI still finds the daemon from the state directory."""
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        d = DaemonProcess(tmp_path / "state", env={"RUNTIME_DIRECTORY": str(runtime)})
        try:
            d.start()
            assert (runtime / "gatewayd.sock").is_socket()
            link = tmp_path / "state" / "gatewayd.sock"
            assert link.is_symlink() and link.resolve() == runtime / "gatewayd.sock"
            env = {k: v for k, v in d.env().items() if k != "RUNTIME_DIRECTORY"}
            status = run_cli(["status", "--json"], env=env)
            assert status.code == 0
            assert status.json()["socket"] == str(runtime / "gatewayd.sock")
            assert d.stop() == 0
            assert not link.exists() and not link.is_symlink()
        finally:
            d.close()


class TestOverrides:
    NOW = datetime(2026, 3, 1, tzinfo=UTC)

    def test_environment_overrides_config_keys(self) -> None:
        config = parse_config(
            "[gateway]\nmax_concurrent_runs = 16\n[scheduler]\ncatchup_window = '1d'\n",
            now=self.NOW,
            env={"GATEWAYD_MAX_CONCURRENT_RUNS": "3", "GATEWAYD_CATCHUP_WINDOW": "2h"},
        )
        assert config.gateway.max_concurrent_runs == 3
        assert config.scheduler.catchup_window_s == 7200

    def test_a_bad_override_names_the_variable(self) -> None:
        with pytest.raises(ConfigError, match=r"GATEWAYD_KILL_GRACE \(overrides gateway"):
            parse_config("", now=self.NOW, env={"GATEWAYD_KILL_GRACE": "forever"})


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


# The directives the units use, checked when systemd-analyze is not installed.
KNOWN_KEYS = {
    "Unit": {"Description", "Documentation", "After", "Wants"},
    "Service": {
        "Type",
        "NotifyAccess",
        "ExecStart",
        "ExecReload",
        "User",
        "Group",
        "StateDirectory",
        "StateDirectoryMode",
        "RuntimeDirectory",
        "RuntimeDirectoryMode",
        "RuntimeDirectoryPreserve",
        "WatchdogSec",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStopSec",
        "KillMode",
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "UMask",
    },
    "Install": {"WantedBy"},
}


class TestUnitFiles:
    @pytest.mark.parametrize(
        "path",
        [ROOT / "systemd" / "gatewayd.service", ROOT / "systemd" / "user" / "gatewayd.service"],
    )
    def test_units_say_what_the_daemon_does(self, path: Path) -> None:
        service = unit(path)["Service"]
        assert service["Type"] == "notify"
        assert "serve" in service["ExecStart"]
        assert "-HUP" in service["ExecReload"]
        assert service["StateDirectory"] == "gatewayd"
        assert service["RuntimeDirectory"] == "gatewayd"
        assert service["Restart"] == "on-failure"
        assert service["KillMode"] == "process"
        assert "WatchdogSec" in service

    @pytest.mark.parametrize(
        ("path", "user", "binary"),
        [
            (ROOT / "systemd" / "gatewayd.service", False, "/usr/local/bin/gatewayd"),
            (ROOT / "systemd" / "user" / "gatewayd.service", True, "%h/.local/bin/gatewayd"),
        ],
    )
    def test_systemd_analyze_verify(
        self, tmp_path: Path, path: Path, user: bool, binary: str
    ) -> None:
        """systemd itself finds no fault; without systemd-analyze, every key must be known."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            parsed = unit(path)
            for section, keys in KNOWN_KEYS.items():
                assert set(parsed[section]) <= keys, set(parsed[section]) - keys
            return
        # verify checks that ExecStart exists: point it at this checkout's gatewayd.
        local = Path(sys.executable).with_name("gatewayd")
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace(binary, str(local)))
        runtime = tmp_path / "xdg"
        runtime.mkdir(mode=0o700)
        argv = [analyze, *(["--user"] if user else []), "verify", str(copy)]
        env: dict[str, Any] = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "", done.stderr

    def test_launchd_plist_loads(self) -> None:
        with (ROOT / "launchd" / "dev.gatewayd.plist").open("rb") as handle:
            plist = plistlib.load(handle)
        assert plist["Label"] == "dev.gatewayd"
        assert plist["ProgramArguments"][1:3] == ["serve", "--config"]
        assert plist["RunAtLoad"] is True
        assert plist["KeepAlive"] == {"SuccessfulExit": False}
        assert plist["StandardOutPath"].endswith(".log")
        assert plist["StandardErrorPath"].endswith(".log")


class TestNotifierNeverBlocks:
    def test_a_manager_that_never_reads_cannot_stall_the_daemon(self, tmp_path: Path) -> None:
        """Datagrams to a full notify socket are dropped instead of blocking the loop."""
        from gatewayd.notify import Notifier

        path = tmp_path / "n.sock"
        deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        deaf.bind(str(path))
        try:
            import threading

            notifier = Notifier({"NOTIFY_SOCKET": str(path)})

            def flood() -> None:
                for _ in range(5000):
                    notifier.status("x" * 100)

            flooding = threading.Thread(target=flood, daemon=True)
            flooding.start()
            flooding.join(timeout=10)
            assert not flooding.is_alive(), "sending blocked on the full socket"
        finally:
            deaf.close()
