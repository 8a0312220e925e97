"""Sessions, lifecycle events and agent turns with a real daemon (I5 end to end)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from gatewayd.testing import DaemonProcess, process_group_members, wait_until

ROOT = Path(__file__).resolve().parent.parent
CONFIG = f"""
[gateway]
kill_grace = "1s"
event_queue = 50

[agents.default]
command = [{str(sys.executable)!r}, {str(ROOT / "examples" / "echo_agent.py")!r}]

[agents.broken]
command = ["sh", "-c", "cat > /dev/null; echo 'agent exploded' >&2; exit 4"]

[agents.slow]
command = ["sh", "-c", "sleep 30"]
timeout = "1s"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path / "state", config=CONFIG) as d:
        yield d


def add(daemon: DaemonProcess, *args: str) -> dict[str, Any]:
    result = daemon.cli("cron", "add", "--json", "--every", "1d", *args)
    assert result.code == 0, result.stderr
    job: dict[str, Any] = result.json()
    return job


def run_and_wait(daemon: DaemonProcess, job: str) -> tuple[int, dict[str, Any]]:
    result = daemon.cli("cron", "run", job, "--wait", "--json")
    body: dict[str, Any] = result.json()
    return result.code, body


def session(daemon: DaemonProcess, key: str) -> dict[str, Any]:
    shown = daemon.cli("sessions", "show", key, "--json")
    assert shown.code == 0, shown.stderr
    body: dict[str, Any] = shown.json()
    return body


def events_of(daemon: DaemonProcess, run_id: str) -> list[dict[str, Any]]:
    listed = daemon.cli("events", "--json", "--limit", "10000")
    assert listed.code == 0, listed.stderr
    events = [orjson.loads(line) for line in listed.stdout.splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq strictly increases"
    return [e for e in events if e.get("run_id") == run_id]


def assert_error_before_finished(
    events: list[dict[str, Any]], *, error_kind: str, stop_reason: str
) -> dict[str, Any]:
    [error] = [e for e in events if (e["stream"], e["phase"]) == ("lifecycle", "error")]
    [finished] = [e for e in events if (e["stream"], e["phase"]) == ("run", "finished")]
    assert error["seq"] < finished["seq"]
    assert (error["error_kind"], error["stop_reason"]) == (error_kind, stop_reason)
    for key in ("ts", "run_id", "job_id", "session_key", "session_id", "error"):
        assert error[key] is not None, key
    return error


class TestEndingsPublishFirst:
    """I5: for every ending, the lifecycle event and the terminal session come first."""

    def test_timeout(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "slow", "--timeout", "1s", "--command", "sleep 30")
        code, run = run_and_wait(daemon, "slow")
        assert (code, run["status"]) == (1, "timed_out")
        shown = session(daemon, run["session_key"])
        assert (shown["status"], shown["stop_reason"]) == ("timed_out", "timeout")
        assert shown["error"] == "job execution timed out"
        error = assert_error_before_finished(
            events_of(daemon, run["run_id"]), error_kind="timeout", stop_reason="timeout"
        )
        assert error["error"] == "job execution timed out"
        assert error["session_key"] == run["session_key"]

    def test_cancel(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "long", "--command", "sleep 60")
        run_id = daemon.call("cron.run", {"job": "long"})["run_id"]
        wait_until(lambda: daemon.call("runs.get", {"run_id": run_id})["status"] == "running")
        cancelled = daemon.cli("cron", "cancel", run_id, "--json")
        assert cancelled.code == 0
        [run] = cancelled.json()
        shown = session(daemon, run["session_key"])
        assert (shown["status"], shown["stop_reason"]) == ("cancelled", "cancelled")
        assert_error_before_finished(
            events_of(daemon, run_id), error_kind="cancelled", stop_reason="cancelled"
        )

    def test_non_zero_exit(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "bad", "--shell", "exit 3")
        code, run = run_and_wait(daemon, "bad")
        assert (code, run["status"], run["exit_code"]) == (1, "failed", 3)
        assert session(daemon, run["session_key"])["status"] == "failed"
        assert_error_before_finished(
            events_of(daemon, run["run_id"]), error_kind="exit", stop_reason="error"
        )

    def test_spawn_failure(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "ghost", "--command", "/no/such/binary")
        code, run = run_and_wait(daemon, "ghost")
        assert (code, run["status"], run["error_kind"]) == (1, "failed", "spawn")
        assert session(daemon, run["session_key"])["status"] == "failed"
        assert_error_before_finished(
            events_of(daemon, run["run_id"]), error_kind="spawn", stop_reason="error"
        )

    def test_interrupted_at_start(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "victim", "--command", "sleep 60")
        run_id = daemon.call("cron.run", {"job": "victim"})["run_id"]
        running = wait_until(
            lambda: (r := daemon.call("runs.get", {"run_id": run_id}))["status"] == "running" and r
        )
        daemon.kill()
        os.killpg(running["pid"], signal.SIGKILL)
        wait_until(lambda: not process_group_members(running["pid"]), what="group gone")
        daemon.start()
        run = daemon.call("runs.get", {"run_id": run_id})
        assert run["status"] == "interrupted", "settled before the socket served"
        shown = session(daemon, run["session_key"])
        assert (shown["status"], shown["stop_reason"]) == ("interrupted", "lost")
        assert_error_before_finished(
            events_of(daemon, run_id), error_kind="interrupted", stop_reason="lost"
        )


class TestAgentTurns:
    def test_happy_path_writes_summary_and_transcript(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "ask", "--agent-message", "hello there agent")
        code, run = run_and_wait(daemon, "ask")
        assert (code, run["status"]) == (0, "succeeded"), run
        assert "hello there agent" in run["summary"]
        assert run["session_key"] in run["summary"], "the agent got GATEWAYD_* variables"
        shown = session(daemon, run["session_key"])
        assert shown["status"] == "done"
        roles = [(e["role"], e["run_id"]) for e in shown["transcript_tail"]]
        assert roles == [("user", run["run_id"]), ("assistant", run["run_id"])]
        assert shown["transcript_tail"][0]["content"] == "hello there agent"
        assert shown["transcript_tail"][1]["content"] == run["summary"]

    def test_failing_agent(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "boom", "--agent-message", "hi", "--agent", "broken")
        code, run = run_and_wait(daemon, "boom")
        assert (code, run["status"], run["exit_code"]) == (1, "failed", 4)
        assert "agent exploded" in run["output_tail"]
        assert session(daemon, run["session_key"])["status"] == "failed"

    def test_agent_that_times_out(self, daemon: DaemonProcess) -> None:
        """The agent's own default timeout applies when the job sets none."""
        add(daemon, "--name", "sleepy", "--agent-message", "hi", "--agent", "slow")
        code, run = run_and_wait(daemon, "sleepy")
        assert (code, run["status"]) == (1, "timed_out")
        shown = session(daemon, run["session_key"])
        assert (shown["status"], shown["stop_reason"]) == ("timed_out", "timeout")
        wait_until(lambda: not process_group_members(run["pid"]), what="the agent to be gone")

    def test_unknown_agent_is_refused(self, daemon: DaemonProcess) -> None:
        result = daemon.cli(
            "cron",
            "add",
            "--name",
            "x",
            "--every",
            "1h",
            "--agent-message",
            "hi",
            "--agent",
            "nobody",
        )
        assert result.code == 2
        assert "no agent 'nobody' is configured" in result.stderr


class TestMainSession:
    def test_system_event_lands_in_the_inbox(self, daemon: DaemonProcess) -> None:
        add(daemon, "--name", "ping", "--system-event", "disk is 91% full")
        code, run = run_and_wait(daemon, "ping")
        assert (code, run["status"]) == (0, "succeeded")
        inbox = session(daemon, "main")["inbox_tail"]
        assert inbox[-1]["text"] == "disk is 91% full"
        assert inbox[-1]["run_id"] == run["run_id"]
        listed = daemon.cli("sessions", "list", "--json").json()
        assert run["session_key"] in [s["key"] for s in listed]


class TestSlowSubscriber:
    def test_a_subscriber_that_never_reads_is_dropped_and_runs_go_on(
        self, daemon: DaemonProcess
    ) -> None:
        """A follower that never reads does not hold up runs; when it reads, a gap
        marker tells it that it was dropped."""
        add(daemon, "--name", "tick", "--system-event", "tick", "--overlap", "allow")
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(str(daemon.socket_path))
        stuck.sendall(
            b'{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{"follow":true,'
            b'"limit":0}}\n'
        )
        try:
            with daemon.client() as client:
                ids = [client.call("cron.run", {"job": "tick"})["run_id"] for _ in range(300)]
                client.set_timeout(30)
                for run_id in ids:
                    assert client.call("runs.wait", {"run_id": run_id})["status"] == "succeeded"
            stuck.settimeout(10)
            reader = stuck.makefile("rb")
            lines = [orjson.loads(reader.readline())]
            while "id" not in lines[-1]:
                lines.append(orjson.loads(reader.readline()))
        finally:
            stuck.close()
        notices = [line["params"] for line in lines if "params" in line]
        assert notices[-1]["stream"] == "gap"
        assert len(notices) < 300 * 5, "it did not get every event"
        assert lines[-1]["result"]["dropped"] is True


class TestWaitOnATerminal:
    def test_progress_then_the_final_run(self, daemon: DaemonProcess) -> None:
        """On a TTY, `cron run --wait` shows the phase and elapsed time, then the run."""
        import pty
        import subprocess

        add(daemon, "--name", "short", "--shell", "sleep 1.5")
        leader, follower = pty.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "gatewayd", "cron", "run", "short", "--wait"],
                env=daemon.env(),
                stdout=follower,
                stderr=subprocess.PIPE,
                timeout=30,
                check=False,
            )
            os.close(follower)
            output = b""
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        finally:
            os.close(leader)
        text = output.decode()
        assert done.returncode == 0, done.stderr
        assert "running" in text and "s\r" in text.replace("\r\n", "\n")
        assert "status" in text and "succeeded" in text.split("status", 1)[1]


class TestFollow:
    def test_events_follow_streams_live_events(self, daemon: DaemonProcess) -> None:
        """`events --follow --json` prints live events, one JSON object per line."""
        import subprocess

        add(daemon, "--name", "live", "--command", "true")
        follower = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "events", "--follow", "--json", "--limit", "0"],
            env=daemon.env(),
            stdout=subprocess.PIPE,
        )
        try:
            assert follower.stdout is not None
            wait_until(
                lambda: daemon.call("gateway.status")["event_subscribers"] == 1,
                what="the follower to subscribe",
            )
            run_id = daemon.call("cron.run", {"job": "live"})["run_id"]
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["phase"] != "finished":
                event = orjson.loads(follower.stdout.readline())
                if event.get("run_id") == run_id:
                    seen.append(event)
        finally:
            follower.terminate()
            follower.wait(timeout=10)
            if follower.stdout is not None:
                follower.stdout.close()
        phases = [(e["stream"], e["phase"]) for e in seen]
        assert phases == [
            ("run", "queued"),
            ("run", "started"),
            ("lifecycle", "start"),
            ("lifecycle", "end"),
            ("run", "finished"),
        ]
