"""Truthful run state across long runs, restarts and crashes, with a real daemon.

The daemon is killed with real signals (SIGKILL, SIGTERM); its runs are real
process groups. Waits are conditions with deadlines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gatewayd.durations import parse_time
from gatewayd.testing import DaemonProcess, observe, process_group_members, wait_until

CONFIG = """
[gateway]
sweep_interval = "200ms"
kill_grace = "1s"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path / "state", config=CONFIG)
    try:
        yield d.start()
    finally:
        d.close()


def run_now(daemon: DaemonProcess, job: str) -> str:
    result = daemon.call("cron.run", {"job": job})
    assert result["ran"], result
    run_id: str = result["run_id"]
    return run_id


def wait_running(daemon: DaemonProcess, run_id: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        run = daemon.run_record(run_id)
        return run if run["status"] == "running" else None

    return wait_until(running, what=f"run {run_id} to be running")


class TestLongRuns:
    def test_a_long_manual_run_is_never_lost(self, daemon: DaemonProcess) -> None:
        """I1/I2: polled every 100 ms across many sweeps, a long run is only ever
        queued, running or succeeded, and the job names it while it runs."""
        daemon.add_job("--name", "long", "--every", "1d", "--shell", "sleep 2.5")
        run_id = run_now(daemon, "long")

        def look() -> tuple[str, str | None]:
            # The job is read between two reads of the run that agree: one moment.
            while True:
                before = daemon.run_record(run_id)["status"]
                job = daemon.call("cron.get", {"job": "long"})
                if daemon.run_record(run_id)["status"] == before:
                    return before, job["running_run_id"]

        seen = observe(look, every=0.1, until=lambda s: s[0] == "succeeded", timeout=20)
        assert {status for status, _ in seen} <= {"queued", "running", "succeeded"}
        assert len([s for s in seen if s[0] == "running"]) >= 15, "the run took >= 12 sweeps"
        assert all(running == run_id for status, running in seen if status == "running")
        assert seen[-1] == ("succeeded", None)


class TestRestart:
    def test_kill_9_of_daemon_and_group_interrupts_the_run(self, daemon: DaemonProcess) -> None:
        """I4: with the daemon and the run's group killed, the restarted daemon records
        the run interrupted within 2 s, and the job runs again at once."""
        daemon.add_job("--name", "victim", "--every", "1d", "--command", "sleep 60")
        run_id = run_now(daemon, "victim")
        pgid = wait_running(daemon, run_id)["pid"]
        daemon.kill()
        os.killpg(pgid, signal.SIGKILL)
        wait_until(lambda: not process_group_members(pgid), timeout=5, what="the group to die")
        started = time.monotonic()
        daemon.start()
        run = wait_until(
            lambda: (r := daemon.run_record(run_id))["status"] != "running" and r,
            timeout=2,
            what="the run to be settled",
        )
        assert time.monotonic() - started < 2.5
        assert (run["status"], run["error_kind"]) == ("interrupted", "interrupted")
        assert "stopped" in run["error"] or "killed" in run["error"]
        again = daemon.cli("cron", "run", "victim", "--json")
        assert again.code == 0, again.stdout + again.stderr
        assert again.json()["ran"] is True

    def test_kill_9_of_daemon_alone_readopts_the_run(self, daemon: DaemonProcess) -> None:
        """I4: a run outlives its daemon; the next instance re-adopts it and records
        its real exit code."""
        daemon.add_job("--name", "seven", "--every", "1d", "--shell", "sleep 3; exit 7")
        run_id = run_now(daemon, "seven")
        first = wait_running(daemon, run_id)
        daemon.kill()
        assert process_group_members(first["pid"]), "the run survives its daemon"
        daemon.start()
        status = daemon.call("gateway.status")
        during = daemon.run_record(run_id)
        assert during["status"] == "running"
        assert during["owner"] == status["instance_id"], "the new instance owns it"
        assert daemon.call("cron.get", {"job": "seven"})["running_run_id"] == run_id
        run = wait_until(
            lambda: (r := daemon.run_record(run_id))["status"] != "running" and r,
            timeout=10,
            what="the re-adopted run to end",
        )
        assert (run["status"], run["exit_code"], run["error_kind"]) == ("failed", 7, "exit")
        assert run["pid"] == first["pid"]

    def test_sigterm_detaches_and_the_next_instance_records_success(
        self, daemon: DaemonProcess
    ) -> None:
        """on_shutdown=detach: SIGTERM leaves the run going; the next instance records
        how it really ended."""
        daemon.add_job("--name", "detached", "--every", "1d", "--shell", "sleep 2; echo done")
        run_id = run_now(daemon, "detached")
        pgid = wait_running(daemon, run_id)["pid"]
        assert daemon.stop() == 0
        assert process_group_members(pgid), "the run goes on without the daemon"
        daemon.start()
        run = wait_until(
            lambda: (r := daemon.run_record(run_id))["status"] != "running" and r,
            timeout=10,
            what="the detached run to end",
        )
        assert (run["status"], run["exit_code"]) == ("succeeded", 0)
        assert run["output_tail"] == "done\n"

    def test_run_that_ended_while_no_daemon_ran_keeps_its_status(
        self, daemon: DaemonProcess
    ) -> None:
        """A run that ends while the daemon is down is recorded with the status its
        waiter wrote, and the time it really ended."""
        daemon.add_job("--name", "quick", "--every", "1d", "--shell", "sleep 0.5; exit 3")
        run_id = run_now(daemon, "quick")
        pgid = wait_running(daemon, run_id)["pid"]
        daemon.kill()
        wait_until(lambda: not process_group_members(pgid), timeout=10, what="the run to end")
        daemon.start()
        run = wait_until(
            lambda: (r := daemon.run_record(run_id))["status"] != "running" and r,
            timeout=5,
            what="the run to be settled",
        )
        assert (run["status"], run["exit_code"]) == ("failed", 3)
        assert run["duration_ms"] < 3000


def catchup_runs(daemon: DaemonProcess, job: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = daemon.call("cron.runs", {"job": job, "limit": 100})
    return [r for r in runs if r["trigger"] == "catchup"]


def caught_up(daemon: DaemonProcess, job: str) -> list[dict[str, Any]]:
    """The job's succeeded catch-up runs, once none of its catch-up runs is live."""
    runs = catchup_runs(daemon, job)
    if not runs or any(r["status"] in ("queued", "running") for r in runs):
        return []
    return [r for r in runs if r["status"] == "succeeded"]


class TestCatchup:
    def test_catchup_policies_after_downtime(self, tmp_path: Path) -> None:
        """I7: after 7 s of downtime, a 2-second job runs once (latest), every missed
        slot (all), or none (none); every missed slot is recorded. (A 1 s misfire_grace:
        slots later than that are missed, those within it would be ordinary runs.)"""
        config = CONFIG + '[scheduler]\nmisfire_grace = "1s"\n'
        d = DaemonProcess(tmp_path / "state", config=config).start()
        try:
            for policy in ("latest", "all", "none"):
                d.add_job(
                    "--name", policy, "--every", "2s", "--command", "true", "--catchup", policy
                )
            wait_until(
                lambda: all(
                    d.call("cron.runs", {"job": p, "limit": 1}) for p in ("latest", "all", "none")
                ),
                timeout=10,
                what="every job to have run once",
            )
            assert d.stop() == 0
            down_since = time.monotonic()
            wait_until(
                lambda: time.monotonic() - down_since >= 7, timeout=10, what="7 s of downtime"
            )
            d.start()
            latest = wait_until(lambda: catchup_runs(d, "latest"), what="latest to catch up")
            everything = wait_until(partial(caught_up, d, "all"), what="all to catch up")
            nothing = wait_until(lambda: catchup_runs(d, "none"), what="none to catch up")
        finally:
            d.close()
        ran = [r for r in latest if r["status"] != "skipped"]
        assert len(ran) == 1, latest
        assert len(latest) >= 3, "the other missed slots are recorded skipped"
        assert {r["error_kind"] for r in latest if r["status"] == "skipped"} == {"missed"}
        assert len(everything) >= 3
        assert all(r["status"] == "skipped" and r["error_kind"] == "missed" for r in nothing)
        assert len(nothing) >= 3


CRASH_LOOPS = int(os.environ.get("GATEWAYD_CRASH_LOOPS", "20"))
CRASH_SEED = int(os.environ.get("GATEWAYD_CRASH_SEED", "20261122"))
WORKLOAD = (
    CONFIG
    + """
[[jobs]]
name = "fast"
every = "1s"
command = "true"

[[jobs]]
name = "slow"
every = "2s"
shell = "sleep 1.5"

[[jobs]]
name = "flaky"
every = "1s"
shell = "exit 3"
retry = 1
retry_backoff = "300ms"

[[jobs]]
name = "queued"
every = "1s"
shell = "sleep 0.7"
overlap = "queue"

[[jobs]]
name = "parallel"
every = "3s"
shell = "sleep 2"
overlap = "allow"

[[jobs]]
name = "catchall"
every = "1s"
command = "true"
catchup = "all"
"""
)
JOBS = ("fast", "slow", "flaky", "queued", "parallel", "catchall")


def reached(daemon: DaemonProcess, target: int) -> bool:
    return total_runs(daemon) >= target


def total_runs(daemon: DaemonProcess) -> int:
    status: dict[str, Any] = daemon.call("gateway.status")
    total: int = status["runs"]["total"]
    return total


def alive_or_ended(d: DaemonProcess, run: dict[str, Any]) -> bool:
    """Whether a run recorded running has a live process, or has its ending recorded."""
    return bool(process_group_members(run["pid"])) or d.run_record(run["run_id"])["status"] not in (
        "queued",
        "running",
    )


class TestCrashLoop:
    def test_crash_loop_leaves_a_true_record(self, tmp_path: Path) -> None:
        """I1, I2, I4, I7 under crashes: kill -9 at random moments, N times
        (GATEWAYD_CRASH_LOOPS, 20 by default); then doctor finds no violation and
        every job can be run at once."""
        import random

        rng = random.Random(CRASH_SEED)
        d = DaemonProcess(tmp_path / "state", config=WORKLOAD)
        try:
            for _ in range(CRASH_LOOPS):
                d.start()
                for job in rng.sample(JOBS, 2):
                    d.call("cron.run", {"job": job})
                target = total_runs(d) + rng.randint(0, 6)
                wait_until(partial(reached, d, target), timeout=15, what="more runs")
                live = [
                    r
                    for j in JOBS
                    for r in d.call("cron.runs", {"job": j, "limit": 5})
                    if r["status"] == "running" and r["pid"]
                ]
                d.kill()
                if live and rng.random() < 0.3:
                    victim = rng.choice(live)["pid"]
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(victim, signal.SIGKILL)
            d.start()
            for job in JOBS:
                asked_at = d.call("gateway.status")["now"]
                result = d.call("cron.run", {"job": job})
                if not result["ran"]:
                    holder = d.run_record(result["run_id"])
                    # Live when it refused: live still, or ended since it was asked.
                    ended = holder["ended_at"]
                    ended_since = ended is not None and parse_time(ended) >= parse_time(asked_at)
                    assert holder["status"] in ("queued", "running") or ended_since, holder
                    if holder["status"] == "running" and holder["pid"]:
                        # Its group lives, or it has just ended and its ending follows at once.
                        wait_until(
                            partial(alive_or_ended, d, holder),
                            timeout=2,
                            what=f"run {holder['run_id']} to have a process or an ending",
                        )
            doctor = d.cli("doctor", "--json")
            assert doctor.code == 0, doctor.stdout
            assert doctor.json()["violations"] == []
            runs = total_runs(d)
        finally:
            d.close()
        assert runs > CRASH_LOOPS
        offline = d.cli("doctor", "--json")
        assert offline.json()["violations"] == [], offline.stdout
