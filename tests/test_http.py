"""The HTTP listener on a real daemon, read with a real client (httpx), and the
metrics parsed with prometheus_client's own parser.

The daemon listens on port 0 and logs the URL it got in its ready line, so no
test guesses a free port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gatewayd.durations import parse_time
from gatewayd.errors import EXIT_USAGE
from gatewayd.testing import DaemonProcess, SmallDisk, wait_until
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = '[http]\nlisten = "127.0.0.1:0"\n'


def url_of(d: DaemonProcess) -> str:
    """The listener's URL, from the daemon's ready line (logged just after READY=1)."""

    def logged() -> str | None:
        log = d.log()
        found = re.search(r'"http":\s*"(http://[^"]+)"', log) or re.search(
            r"http=(http://\S+)", log
        )
        return None if found is None else found.group(1)

    return wait_until(logged, what="the ready line")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict[Any, float], name: str, **labels: str) -> float | None:
    return scrape.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    out = tmp_path / "alerts.jsonl"
    config = LOOPBACK + f'[alerts.file]\ncommand = ["sh", "-c", "cat >> {out}"]\n'
    with DaemonProcess(tmp_path / "state", config=config) as d:
        yield d


class TestMetrics:
    def test_known_runs_show_in_the_metrics(self, daemon: DaemonProcess) -> None:
        """After known runs, /metrics parses and holds them: runs by job, status and
        trigger; durations; the firing lag of scheduled runs; the jobs' next run and last
        success from the store; live runs; alerts by sink and state; store commits; the
        instance."""
        ok = daemon.add_job("--name", "ok", "--every", "1h", "--command", "true")
        daemon.add_job("--name", "bad", "--every", "1h", "--shell", "exit 1", "--alert", "file")
        daemon.add_job("--name", "tick", "--every", "1s", "--command", "true")
        for _ in range(2):
            daemon.cli("cron", "run", "ok", "--wait")
        daemon.cli("cron", "run", "bad", "--wait")
        wait_until(
            lambda: [a for a in daemon.cli("alerts", "--json").json() if a["state"] == "delivered"],
            what="the alert delivered",
        )
        wait_until(lambda: daemon.cli("cron", "runs", "--id", "tick", "--json").json())
        base = url_of(daemon)

        def scraped() -> dict[Any, float] | None:
            got = samples(httpx.get(base + "metrics").text)
            lag = value(got, "gatewayd_firing_lag_seconds_count") or 0
            return got if lag >= 1 else None

        got = wait_until(scraped, what="a scheduled run counted")
        status = daemon.call("gateway.status")
        assert (
            value(got, "gatewayd_runs_total", job="ok", status="succeeded", trigger="manual") == 2
        )
        assert value(got, "gatewayd_runs_total", job="bad", status="failed", trigger="manual") == 1
        assert value(got, "gatewayd_run_duration_seconds_count", job="ok") == 2
        next_run = value(got, "gatewayd_job_next_run_timestamp_seconds", job="ok")
        assert next_run == pytest.approx(parse_time(ok["next_run_at"]).timestamp(), abs=0.001)
        assert value(got, "gatewayd_job_last_success_timestamp_seconds", job="ok") is not None
        assert value(got, "gatewayd_job_last_success_timestamp_seconds", job="bad") is None
        assert value(got, "gatewayd_running_runs") is not None
        assert value(got, "gatewayd_queued_runs") is not None
        assert value(got, "gatewayd_alerts_total", sink="file", state="delivered") == 1
        assert (value(got, "gatewayd_store_commit_seconds_count") or 0) > 0
        info = [k for k in got if k[0] == "gatewayd_instance_info"]
        assert len(info) == 1 and ("instance", status["instance_id"]) in info[0][1]
        assert not any("run_id" in dict(labels) for _, labels in got)

    def test_the_listener_is_read_only(self, daemon: DaemonProcess) -> None:
        base = url_of(daemon)
        assert httpx.post(base + "metrics").status_code == 405
        assert httpx.delete(base + "healthz").status_code == 405
        assert httpx.get(base + "healthz").json() == {"status": "ok"}


class TestHealth:
    def test_healthz_says_when_the_store_takes_no_writes(self, tmp_path: Path) -> None:
        """/healthz: 200 while the store takes writes; 503 naming the fault once the disk
        is full (a write has met it); 200 again once space returns."""
        with SmallDisk(tmp_path / "fs", size="16m") as disk:
            d = DaemonProcess(disk.path / "state", config=LOOPBACK, files_dir=tmp_path)
            with d:
                d.add_job("--name", "tick", "--every", "1s", "--command", "true")
                health = url_of(d) + "healthz"
                assert httpx.get(health).status_code == 200
                disk.fill()

                def unhealthy() -> httpx.Response | None:
                    answer = httpx.get(health)
                    return answer if answer.status_code == 503 else None

                down = wait_until(unhealthy, timeout=15)
                assert "no space" in down.json()["reason"]
                disk.free()
                wait_until(lambda: httpx.get(health).status_code == 200, timeout=30)


class TestTheTokenRule:
    def test_beyond_loopback_without_a_token_the_daemon_does_not_start(
        self, tmp_path: Path
    ) -> None:
        """A non-loopback address without [http] token_env: exit 2, naming the rule, from
        the config file and from --http alike; nothing is served."""
        config = '[http]\nlisten = "0.0.0.0:0"\n'
        by_file = DaemonProcess(tmp_path / "state", config=config, files_dir=tmp_path)
        by_flag = DaemonProcess(tmp_path / "flag", args=["--http", "0.0.0.0:0"], files_dir=tmp_path)
        for d, named in ((by_file, "http.token_env"), (by_flag, "--http: token_env")):
            try:
                assert d.exit_code() == EXIT_USAGE
                assert named in d.log()
                assert not (d.state_dir / "gatewayd.sock").exists()
            finally:
                d.close()

    def test_with_a_token_a_request_without_it_gets_401(self, tmp_path: Path) -> None:
        config = '[http]\nlisten = "127.0.0.1:0"\ntoken_env = "WEB_TOKEN"\n'
        env = {"WEB_TOKEN": "right"}
        with DaemonProcess(tmp_path / "state", config=config, env=env) as d:
            health = url_of(d) + "healthz"
            assert httpx.get(health).status_code == 401
            wrong = httpx.get(health, headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
            assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
            right = httpx.get(health, headers={"Authorization": "Bearer right"})
            assert right.status_code == 200


class TestTheListenersStart:
    def test_a_port_in_use_stops_the_start_before_anything_runs(self, tmp_path: Path) -> None:
        """An [http] address another process holds: the daemon does not start (exit 5,
        naming the address), and serves nothing."""
        import socket

        from gatewayd.errors import EXIT_CONFLICT

        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        try:
            port = held.getsockname()[1]
            config = f'[http]\nlisten = "127.0.0.1:{port}"\n'
            d = DaemonProcess(tmp_path / "state", config=config, files_dir=tmp_path)
            try:
                assert d.exit_code() == EXIT_CONFLICT
                assert f"cannot listen for HTTP on 127.0.0.1:{port}" in d.log()
                assert not (d.state_dir / "gatewayd.sock").exists()
            finally:
                d.close()
        finally:
            held.close()
