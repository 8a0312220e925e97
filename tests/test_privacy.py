"""Nobody else reads the store, no daemon steals another's socket, runs get a known
environment.

Real daemons under the usual umask (022) in a state directory the user made
(0755), real runs of every payload kind, a real second daemon.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gatewayd.errors import EXIT_CONFLICT
from gatewayd.testing import DaemonProcess

CONFIG = """
[agents.default]
command = ["cat"]
"""


def modes(root: Path) -> dict[str, int]:
    """The permission bits of everything below ``root`` (the root itself excluded)."""
    found = {}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


class TestPrivateFiles:
    def test_everything_gatewayd_makes_is_its_users_alone(self, tmp_path: Path) -> None:
        """Under umask 022, in a 0755 state directory: the store, its WAL, the run logs and
        exit files, sessions, inbox and transcripts are 0600 and their folders 0700; the
        directory's mode is warned about by name; runs still get the user's umask."""
        state = tmp_path / "state"
        state.mkdir(mode=0o755)
        os.chmod(state, 0o755)
        previous = os.umask(0o022)
        try:
            with DaemonProcess(state, config=CONFIG) as d:
                made = tmp_path / "made-by-a-run"
                for args in (
                    ["--shell", f"echo out; touch {made}"],
                    ["--system-event", "hello"],
                    ["--agent-message", "hi"],
                ):
                    name = args[0].strip("-")
                    added = d.cli("cron", "add", "--name", name, "--every", "1h", *args)
                    assert added.code == 0, added.stderr
                    done = d.cli("cron", "run", name, "--wait", "--json")
                    assert done.code == 0, done.stdout + done.stderr
                found = modes(state)
                assert "warning" in d.log() and "0755" in d.log()
        finally:
            os.umask(previous)
        assert any(name.endswith(".exit") for name in found)
        assert any(name.endswith("transcript.jsonl") for name in found)
        assert "gatewayd.db" in found and "gatewayd.db-wal" in found
        lax = {
            name: f"{mode:04o}"
            for name, mode in found.items()
            if mode & 0o077 and not stat.S_ISSOCK((state / name).lstat().st_mode)
        }
        assert lax == {}, "everything is private to the daemon's user"
        assert stat.S_IMODE(made.stat().st_mode) == 0o644, "a run gets the user's umask"


class TestSocketsAreNotStolen:
    def test_a_socket_where_a_daemon_answers_is_never_unlinked(self, tmp_path: Path) -> None:
        """`serve --state-dir B --socket A/gatewayd.sock` while A serves: exit 5, naming the
        socket; A goes on answering on it."""
        with DaemonProcess(tmp_path / "a") as a:
            thief = DaemonProcess(tmp_path / "b", args=["--socket", str(a.socket_path)])
            try:
                assert thief.exit_code() == EXIT_CONFLICT
            finally:
                thief.close()
            assert str(a.socket_path) in thief.log() and "another daemon answers" in thief.log()
            assert a.call("gateway.status")["state_dir"] == str(tmp_path / "a")


class TestRunEnvironment:
    def test_the_service_managers_variables_never_reach_a_run(self, tmp_path: Path) -> None:
        """NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*, INVOCATION_ID and gatewayd's own settings
        (GATEWAYD_*) stay with the daemon; the rest of its environment reaches runs."""
        service = {
            "WATCHDOG_USEC": "0",
            "LISTEN_FDS": "0",
            "LISTEN_PID": "1",
            "INVOCATION_ID": "abc",
            "JOURNAL_STREAM": "8:9",
            "GATEWAYD_LOG_LEVEL": "info",
            "KEEP_ME": "yes",
        }
        with DaemonProcess(tmp_path / "state", env=service) as d:
            added = d.cli("cron", "add", "--name", "env", "--every", "1h", "--command", "env")
            assert added.code == 0, added.stderr
            run = d.cli("cron", "run", "env", "--wait", "--json").json()
        names = {line.split("=", 1)[0] for line in run["output_tail"].splitlines()}
        assert {"KEEP_ME", "PATH", "GATEWAYD_RUN_ID", "GATEWAYD_SOCKET"} <= names
        leaked = names & {
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "LISTEN_FDS",
            "LISTEN_PID",
            "INVOCATION_ID",
            "JOURNAL_STREAM",
            "GATEWAYD_LOG_LEVEL",
        }
        assert leaked == set()

    def test_pass_env_passes_only_what_it_names(self, tmp_path: Path) -> None:
        config = '[gateway]\npass_env = ["PATH"]\n'
        with DaemonProcess(tmp_path / "state", config=config, env={"KEEP_ME": "no"}) as d:
            d.cli("cron", "add", "--name", "env", "--every", "1h", "--command", "env")
            done = d.cli("cron", "run", "env", "--wait", "--json")
            assert done.code == 0, done.stderr
            run = done.json()
        names = {line.split("=", 1)[0] for line in run["output_tail"].splitlines()}
        assert "PATH" in names and "KEEP_ME" not in names and "HOME" not in names
        assert "GATEWAYD_RUN_ID" in names
