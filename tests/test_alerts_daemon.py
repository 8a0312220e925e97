"""Alerts and ``cron why`` on a real daemon, driven through the CLI as a user would.

The sinks are real: a command writing a file, and an HTTP server on loopback
(this module's :class:`AlertServer`) scripted to fail, or to hang.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gatewayd.durations import parse_time
from gatewayd.testing import DaemonProcess, wait_until

HANG_S = 60.0


class AlertServer:
    """A webhook on 127.0.0.1: each POST gets the next of ``statuses`` (then 200), after
    holding it ``hang_s`` (until :meth:`release`); every request is recorded."""

    def __init__(self, statuses: list[int] | None = None, *, hang_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server._changed:
                    status = server.statuses.pop(0) if server.statuses else 200
                    server.requests.append(
                        {
                            "body": json.loads(body),
                            "authorization": self.headers.get("Authorization"),
                            "status": status,
                        }
                    )
                    server._changed.notify_all()
                if server.hang_s:
                    server._released.wait(server.hang_s)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"scripted")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def wait_for(self, count: int, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{count} requests not seen; got {self.requests}")
            return list(self.requests)

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> AlertServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()


def hook_config(url: str, *, backoff: str = "0.2s", timeout: str = "10s") -> str:
    return f"""
[alerts.hook]
webhook = "{url}"
token_env = "HOOK_TOKEN"
retry_backoff = "{backoff}"
timeout = "{timeout}"
"""


def alerts(d: DaemonProcess, job: str) -> list[dict[str, Any]]:
    result = d.cli("alerts", "--job", job, "--json")
    assert result.code == 0, result.stderr
    found: list[dict[str, Any]] = result.json()
    return found


def alert_in(d: DaemonProcess, job: str, state: str, *, timeout: float = 20.0) -> dict[str, Any]:
    """The job's alert once one is in ``state``."""

    def found() -> dict[str, Any] | None:
        return next((a for a in alerts(d, job) if a["state"] == state), None)

    return wait_until(found, timeout=timeout, what=f"an alert {state}")


@pytest.fixture
def server() -> Iterator[AlertServer]:
    with AlertServer([500, 500]) as s:
        yield s


class TestWebhookDelivery:
    def test_two_failures_then_delivered_on_the_third_attempt(
        self, tmp_path: Path, server: AlertServer
    ) -> None:
        """A webhook that fails twice, then answers 200: the alert is delivered on the
        third attempt, all three attempts recorded with their errors; it carries the
        job, the run, the reason, the streak, the host and the instance, with the
        bearer token from the variable the config names."""
        config = hook_config(server.url)
        env = {"HOOK_TOKEN": "s3cret"}
        with DaemonProcess(tmp_path / "state", config=config, env=env) as d:
            d.add_job("--name", "backup", "--every", "1h", "--shell", "exit 3", "--alert", "hook")
            run = d.cli("cron", "run", "backup", "--wait", "--json").json()
            assert run["status"] == "failed"
            alert = alert_in(d, "backup", "delivered")
            status = d.call("gateway.status")
        assert [a["error"] for a in alert["attempts"]] == [
            "HTTP 500: scripted",
            "HTTP 500: scripted",
            None,
        ]
        requests = server.wait_for(3)
        assert [r["status"] for r in requests] == [500, 500, 200]
        assert {r["authorization"] for r in requests} == {"Bearer s3cret"}
        body = requests[-1]["body"]
        assert body["reason"] == "failure" and body["streak"] == 1
        assert body["job"]["name"] == "backup" and body["run_ids"] == [run["run_id"]]
        assert body["instance"] == status["instance_id"] and body["host"]
        assert body["attempt"] == 3

    def test_a_daemon_killed_between_a_failure_and_the_delivery_delivers_once_after(
        self, tmp_path: Path
    ) -> None:
        """Stored before it is delivered: SIGKILL after a failed attempt, then a restart;
        the alert is delivered once, its two attempts recorded, and raised once."""
        with AlertServer([500]) as server:
            config = hook_config(server.url, backoff="3s")
            env = {"HOOK_TOKEN": "t"}
            d = DaemonProcess(tmp_path / "state", config=config, env=env)
            with d:
                d.add_job("--name", "sync", "--every", "1h", "--shell", "exit 1", "--alert", "hook")
                d.cli("cron", "run", "sync", "--wait")
                server.wait_for(1)
                wait_until(
                    lambda: [a for a in alerts(d, "sync") if len(a["attempts"]) == 1],
                    what="the failed attempt recorded",
                )
                d.kill()
                d.start()
                alert = alert_in(d, "sync", "delivered")
                every = alerts(d, "sync")
            requests = server.wait_for(2)
        assert [r["status"] for r in requests] == [500, 200]
        assert len(every) == 1
        assert len(alert["attempts"]) == 2

    def test_an_alert_whose_attempts_all_fail_ends_failed_with_its_error(
        self, tmp_path: Path
    ) -> None:
        """Never silently dropped: after the sink's last attempt, ``gatewayd alerts`` shows
        the alert ``failed``, with the error of that attempt."""
        with AlertServer([503, 503, 503]) as server:
            config = hook_config(server.url) + "max_attempts = 2\n"
            with DaemonProcess(tmp_path / "state", config=config, env={"HOOK_TOKEN": "t"}) as d:
                d.add_job("--name", "etl", "--every", "1h", "--shell", "exit 1", "--alert", "hook")
                d.cli("cron", "run", "etl", "--wait")
                alert = alert_in(d, "etl", "failed")
                text = d.cli("alerts", "--job", "etl").stdout
        assert alert["error"] == "HTTP 503: scripted"
        assert len(alert["attempts"]) == 2
        assert len(server.requests) == 2
        assert "failed" in text and "HTTP 503" in text


class TestCommandSink:
    def test_a_command_sink_gets_the_alert_as_json_on_stdin(self, tmp_path: Path) -> None:
        """A command sink writes the JSON it got to a file."""
        out = tmp_path / "alert.json"
        config = f'[alerts.file]\ncommand = ["sh", "-c", "cat > {out}"]\n'
        with DaemonProcess(tmp_path / "state", config=config) as d:
            d.add_job("--name", "report", "--every", "1h", "--shell", "exit 2", "--alert", "file")
            run = d.cli("cron", "run", "report", "--wait", "--json").json()
            alert_in(d, "report", "delivered")
        got = json.loads(out.read_text())
        assert got["reason"] == "failure"
        assert got["job"]["name"] == "report"
        assert got["run_ids"] == [run["run_id"]]
        assert "exit 2" in got["message"] or "exit" in got["message"]


class TestDeadMansSwitch:
    def test_a_job_with_no_success_within_seconds_alerts(self, tmp_path: Path) -> None:
        """--expect-success-within 2s on a job that has not succeeded since its creation:
        a silence alert a couple of seconds later, once."""
        out = tmp_path / "alerts.jsonl"
        config = f'[alerts.file]\ncommand = ["sh", "-c", "cat >> {out}; echo >> {out}"]\n'
        with DaemonProcess(tmp_path / "state", config=config) as d:
            job = d.add_job(
                "--name",
                "nightly",
                "--every",
                "1h",
                "--command",
                "true",
                "--alert",
                "file",
                "--expect-success-within",
                "2s",
            )
            alert = alert_in(d, "nightly", "delivered", timeout=15)
            assert len(alerts(d, "nightly")) == 1
        created = parse_time(job["created_at"])
        raised = parse_time(alert["raised_at"])
        assert alert["reason"] == "silence"
        assert 1.9 <= (raised - created).total_seconds() <= 2.1


class TestHangingSink:
    def test_a_sink_that_hangs_delays_no_slot(self, tmp_path: Path) -> None:
        """A webhook that holds its answer for 60 s: while it hangs, every job's slots
        still fire on time (each run starts within 0.5 s of its slot)."""
        with AlertServer(hang_s=HANG_S) as server:
            config = hook_config(server.url, timeout="90s")
            with DaemonProcess(tmp_path / "state", config=config, env={"HOOK_TOKEN": "t"}) as d:
                d.add_job(
                    "--name", "failing", "--every", "1s", "--shell", "exit 1", "--alert", "hook"
                )
                d.add_job("--name", "steady", "--every", "1s", "--command", "true")
                server.wait_for(1)
                hung_at = time.time()

                def slots_after_the_hang(name: str) -> list[dict[str, Any]]:
                    runs = d.cli("cron", "runs", "--id", name, "--json").json()
                    later = [
                        r
                        for r in runs
                        if r["started_at"] and parse_time(r["scheduled_for"]).timestamp() > hung_at
                    ]
                    return later if len(later) >= 4 else []

                steady = wait_until(lambda: slots_after_the_hang("steady"), timeout=20)
                failing = wait_until(lambda: slots_after_the_hang("failing"), timeout=20)
                assert len(server.requests) == 1  # still hanging: no second attempt yet
        for run in steady + failing:
            lag = _lag(run)
            assert lag < 0.5, (run["job_name"], run["scheduled_for"], lag)


def _lag(run: dict[str, Any]) -> float:
    started: datetime = parse_time(run["started_at"])
    return (started - parse_time(run["scheduled_for"])).total_seconds()
