"""End to end: `gatewayd serve` as a real process, driven through the CLI and the socket.

Everything here is real: the SQLite file, the subprocesses, the Unix socket and
the signals. Waits are conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from gatewayd.testing import DaemonProcess, process_group_members, wait_until


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path / "state") as d:
        yield d


class TestRuns:
    """Runs are recorded truthfully from the first moment to their one ending."""

    def test_one_second_job_records_succeeded_runs(self, daemon: DaemonProcess) -> None:
        """I3/I7: a 1-second job records at least 3 succeeded scheduled runs with distinct ids."""
        job = daemon.add_job("--name", "tick", "--every", "1s", "--command", "true")

        def three_succeeded() -> list[dict[str, Any]]:
            runs = daemon.call("cron.runs", {"job": job["id"], "limit": 50})
            done = [r for r in runs if r["status"] == "succeeded"]
            return done if len(done) >= 3 else []

        runs = wait_until(three_succeeded, timeout=15, what="3 succeeded runs")
        assert len({r["run_id"] for r in runs}) == len(runs)
        assert {r["trigger"] for r in runs} <= {"schedule", "catchup"}
        slots = [r["scheduled_for"] for r in runs]
        assert len(set(slots)) == len(slots)
        history = daemon.cli("cron", "runs", "--id", "tick")
        assert history.code == 0 and runs[0]["run_id"] in history.stdout

    def test_cron_run_id_is_found_at_once(self, daemon: DaemonProcess) -> None:
        """I6: the run id `cron run` prints is found by `runs show` immediately."""
        daemon.add_job("--name", "manual", "--every", "1h", "--command", "sleep 1")
        ran = daemon.cli("cron", "run", "manual", "--json")
        assert ran.code == 0, ran.stderr
        body = ran.json()
        assert body["ok"] is True and body["ran"] is True
        shown = daemon.cli("runs", "show", body["run_id"], "--json")
        assert shown.code == 0, shown.stderr
        assert shown.json()["status"] in ("queued", "running", "succeeded")
        assert shown.json()["trigger"] == "manual"

    def test_run_wait_prints_the_final_run_and_exit_code(self, daemon: DaemonProcess) -> None:
        """`cron run --wait` prints the final run; exit 0 on success, 1 otherwise."""
        daemon.add_job("--name", "ok", "--every", "1h", "--shell", "echo hello; echo err >&2")
        daemon.add_job("--name", "bad", "--every", "1h", "--shell", "echo oops; exit 7")
        good = daemon.cli("cron", "run", "ok", "--wait", "--json")
        assert good.code == 0, good.stderr
        assert good.json()["status"] == "succeeded"
        assert good.json()["output_tail"] == "hello\nerr\n"
        bad = daemon.cli("cron", "run", "bad", "--wait", "--json")
        assert bad.code == 1
        assert (bad.json()["status"], bad.json()["exit_code"]) == ("failed", 7)
        assert bad.json()["error_kind"] == "exit"
        log = daemon.state_dir / "runs" / bad.json()["job_id"] / f"{bad.json()['run_id']}.log"
        assert log.read_text() == "oops\n"

    def test_a_command_starts_with_its_signals_at_their_defaults(
        self, daemon: DaemonProcess
    ) -> None:
        """A run's command blocks no signal, and ignores none of those that stop it.

        (SIGPIPE and SIGXFSZ, which Python ignores, and those the daemon handles.
        Whatever the daemon's own parent ignores, it passes on like any program.)
        """
        daemon.add_job(
            "--name",
            "sig",
            "--every",
            "1h",
            "--shell",
            "grep -E '^Sig(Ign|Blk)' /proc/self/status",
        )
        done = daemon.cli("cron", "run", "sig", "--wait", "--json")
        assert done.code == 0, done.stderr
        masks = dict(line.split(":\t") for line in done.json()["output_tail"].splitlines())
        assert int(masks["SigBlk"], 16) == 0
        stopping = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ)
        assert int(masks["SigIgn"], 16) & sum(1 << (sig - 1) for sig in stopping) == 0

    def test_cancel_stops_the_whole_process_group(self, daemon: DaemonProcess) -> None:
        """A cancelled 60-second job ends `cancelled`, and no process of its group is left."""
        daemon.add_job("--name", "long", "--every", "1h", "--shell", "sleep 60 & sleep 60; wait")
        run_id = daemon.cli("cron", "run", "long", "--json").json()["run_id"]
        running = wait_until(
            lambda: (r := daemon.run_record(run_id))["status"] == "running" and r,
            what="the run to be running",
        )
        pgid = running["pid"]
        wait_until(lambda: len(process_group_members(pgid)) >= 3, what="the group to start")
        cancelled = daemon.cli("cron", "cancel", run_id, "--json")
        assert cancelled.code == 0, cancelled.stderr
        [run] = cancelled.json()
        assert (run["status"], run["error_kind"], run["stop_reason"]) == (
            "cancelled",
            "cancelled",
            "cancelled",
        )
        wait_until(lambda: not process_group_members(pgid), timeout=5, what="the group to go")
        job = daemon.call("cron.get", {"job": "long"})
        assert job["running_run_id"] is None

    def test_timeout_ends_timed_out_and_stops_the_group(self, daemon: DaemonProcess) -> None:
        """A `--timeout 1s` job ends `timed_out`, and its process group is gone."""
        daemon.add_job(
            "--name",
            "slow",
            "--every",
            "1h",
            "--timeout",
            "1s",
            "--shell",
            "sleep 30 & sleep 30; wait",
        )
        started = time.monotonic()
        waited = daemon.cli("cron", "run", "slow", "--wait", "--json")
        assert waited.code == 1
        run = waited.json()
        assert (run["status"], run["error_kind"], run["stop_reason"]) == (
            "timed_out",
            "timeout",
            "timeout",
        )
        assert run["error"] == "job execution timed out"
        assert time.monotonic() - started < 10
        wait_until(lambda: not process_group_members(run["pid"]), timeout=5, what="group gone")

    def test_spawn_failure_is_recorded(self, daemon: DaemonProcess) -> None:
        """A command that cannot start ends `failed` with error_kind `spawn`, naming it."""
        daemon.add_job("--name", "nope", "--every", "1h", "--command", "/no/such/program")
        waited = daemon.cli("cron", "run", "nope", "--wait", "--json")
        assert waited.code == 1
        run = waited.json()
        assert (run["status"], run["error_kind"]) == ("failed", "spawn")
        assert "/no/such/program" in run["error"]


class TestReads:
    def test_reads_change_nothing(self, daemon: DaemonProcess) -> None:
        """I8: ten `cron list` and `status` calls leave next_run_at unchanged."""
        daemon.add_job("--name", "hourly", "--every", "1h", "--command", "true")
        daemon.add_job(
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Berlin",
            "--command",
            "true",
        )
        before = daemon.cli("cron", "list", "--json").json()
        for _ in range(10):
            assert daemon.cli("cron", "list", "--json").code == 0
            assert daemon.cli("status", "--json").code == 0
        after = daemon.cli("cron", "list", "--json").json()
        assert [j["next_run_at"] for j in after] == [j["next_run_at"] for j in before]
        assert after == before

    def test_status_reports_the_daemon(self, daemon: DaemonProcess) -> None:
        daemon.add_job("--name", "hourly", "--every", "1h", "--command", "true")
        status = daemon.cli("status", "--json").json()
        for key in (
            "version",
            "instance_id",
            "pid",
            "state_dir",
            "socket",
            "started_at",
            "jobs",
            "runs",
            "next_wake_at",
        ):
            assert key in status
        assert status["pid"] == daemon.pid
        assert status["jobs"]["total"] == 1
        assert status["state_dir"] == str(daemon.state_dir)
        assert status["next_wake_at"] is not None


class TestBadInput:
    """Bad input gets exit 2 and a message naming the problem; nothing is stored."""

    @pytest.mark.parametrize(
        ("flags", "named"),
        [
            (["--cron", "61 * * * *"], "61 * * * *"),
            (["--cron", "* * * * *", "--tz", "Mars/Olympus"], "Mars/Olympus"),
            (["--every", "1h", "--timeout=-5s"], "negative"),
            (["--every", "5parsecs"], "5parsecs"),
            (["--at", "next tuesday"], "next tuesday"),
            (["--at", "2001-01-01T00:00:00Z"], "in the past"),
        ],
    )
    def test_refused(self, daemon: DaemonProcess, flags: list[str], named: str) -> None:
        result = daemon.cli("cron", "add", "--name", "bad", *flags, "--command", "true")
        assert result.code == 2
        assert named in result.stderr
        assert daemon.call("cron.list", {"all": True}) == []

    def test_unknown_job_is_exit_4(self, daemon: DaemonProcess) -> None:
        result = daemon.cli("cron", "show", "ghost")
        assert result.code == 4
        assert "ghost" in result.stderr

    def test_name_taken_is_exit_5(self, daemon: DaemonProcess) -> None:
        daemon.add_job("--name", "dup", "--every", "1h", "--command", "true")
        result = daemon.cli("cron", "add", "--name", "dup", "--every", "1h", "--command", "true")
        assert result.code == 5
        assert "'dup' is taken" in result.stderr

    def test_wrong_rpc_types_are_named(self, daemon: DaemonProcess) -> None:
        with pytest.raises(Exception, match=r"cron\.runs needs 'limit' as an integer") as caught:
            daemon.call("cron.runs", {"job": "x", "limit": "ten"})
        assert getattr(caught.value, "rpc_code", None) == -32602


def raw_exchange(path: Path, payload: bytes, answers: int) -> list[dict[str, Any]]:
    """Send raw bytes on the socket and read ``answers`` lines back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        reader = sock.makefile("rb")
        return [orjson.loads(reader.readline()) for _ in range(answers)]


class TestSocket:
    """The socket is private, and no frame can crash the daemon."""

    def test_socket_is_private(self, daemon: DaemonProcess) -> None:
        mode = stat.S_IMODE(daemon.socket_path.stat().st_mode)
        assert mode == 0o600

    def test_garbage_gets_errors_and_the_daemon_keeps_serving(self, daemon: DaemonProcess) -> None:
        replies = raw_exchange(
            daemon.socket_path,
            b"this is not json\n"
            b"[1, 2]\n"
            b'{"jsonrpc": "2.0", "id": 1}\n'
            b'{"jsonrpc": "2.0", "id": 2, "method": "no.such"}\n'
            b'{"jsonrpc": "2.0", "id": 3, "method": "cron.get", "params": [1]}\n'
            b'{"jsonrpc": "2.0", "id": 4, "method": "gateway.status"}\n',
            6,
        )
        codes = [r.get("error", {}).get("code") for r in replies]
        assert codes == [-32700, -32600, -32600, -32601, -32602, None]
        assert replies[5]["result"]["pid"] == daemon.pid
        assert daemon.cli("status").code == 0

    def test_oversized_frame_is_refused_and_the_connection_goes_on(
        self, daemon: DaemonProcess
    ) -> None:
        big = b'{"jsonrpc": "2.0", "id": 1, "method": "cron.add", "params": {"name": "'
        big += b"x" * (2 << 20) + b'"}}\n'
        replies = raw_exchange(
            daemon.socket_path,
            big + b'{"jsonrpc": "2.0", "id": 2, "method": "gateway.status"}\n',
            2,
        )
        assert replies[0]["error"]["code"] == -32600
        assert "exceeds the limit of 1048576 bytes" in replies[0]["error"]["message"]
        assert replies[1]["id"] == 2 and "result" in replies[1]
        assert daemon.call("cron.list", {"all": True}) == []


class TestSingleInstance:
    def test_second_serve_on_the_same_state_dir_fails_at_once(self, daemon: DaemonProcess) -> None:
        """A second daemon on a state dir exits 5 at once, naming the holder."""
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "gatewayd", "serve", "--state-dir", str(daemon.state_dir)],
            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAYD_")},
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 5
        assert f"pid {daemon.pid}" in second.stderr.decode()
        assert time.monotonic() - started < 5
        assert daemon.cli("status").code == 0

    def test_sigterm_exits_cleanly(self, tmp_path: Path) -> None:
        d = DaemonProcess(tmp_path / "state").start()
        try:
            assert d.stop() == 0
            assert not d.socket_path.exists()
        finally:
            d.close()
