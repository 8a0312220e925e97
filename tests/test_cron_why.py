"""``cron why``: each cause made real on a real daemon, and the timeline's rules.

A live run for an overlap skip, a stopped daemon for missed slots, ``cron
disable``, and failures for a pause: each is read back through ``gatewayd cron
why --json`` as a user would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gatewayd.durations import parse_time
from gatewayd.model import (
    ExecPayload,
    Instance,
    InstanceState,
    Job,
    JobSource,
    Schedule,
    ScheduleKind,
    Standing,
    StandingChange,
)
from gatewayd.testing import DaemonProcess, wait_until
from gatewayd.why import Fate, explain

from tests.harness import START


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path / "state") as d:
        yield d


def why(d: DaemonProcess, job: str, *since: str) -> dict[str, Any]:
    result = d.cli("cron", "why", job, "--json", *(("--since", since[0]) if since else ()))
    assert result.code == 0, result.stderr
    found: dict[str, Any] = result.json()
    return found


def fates(report: dict[str, Any], fate: str) -> list[dict[str, Any]]:
    return [s for s in report["slots"] if s["fate"] == fate]


def why_once(d: DaemonProcess, job: str, wanted: Any) -> dict[str, Any] | None:
    """The job's ``cron why`` once ``wanted(report)`` holds, else ``None``."""
    report = why(d, job)
    return report if wanted(report) else None


def wall_clock_past(moment: float) -> bool:
    """A condition on the wall clock, for slots that must pass while nothing fires them."""
    return time.time() > moment


class TestCausesOnADaemon:
    def test_overlap_names_the_run_that_held_the_slot(self, daemon: DaemonProcess) -> None:
        """A live run makes the next slots skipped (overlap skip); why names that run."""
        daemon.add_job("--name", "slow", "--every", "1s", "--shell", "sleep 2.5")
        report = wait_until(
            lambda: why_once(daemon, "slow", lambda r: fates(r, "skipped")), timeout=15
        )
        skipped = fates(report, "skipped")[0]
        holder = skipped["held_by"]
        assert holder is not None
        assert holder in {s["run_id"] for s in report["slots"] if s["fate"] in ("live", "ran")}
        assert daemon.run_record(holder)["started_at"] is not None

    def test_missed_slots_say_when_no_instance_was_alive(self, tmp_path: Path) -> None:
        """A stopped daemon misses slots: why shows them missed, with when no instance
        was alive (from the instances' records) and what the catch-up policy did (latest:
        the latest slot run late, the others recorded missed)."""
        config = '[scheduler]\nmisfire_grace = "500ms"\n'
        d = DaemonProcess(tmp_path / "state", config=config)
        with d:
            d.add_job("--name", "tick", "--every", "1s", "--command", "true")
            wait_until(lambda: len(d.cli("cron", "runs", "--id", "tick", "--json").json()) >= 2)
            d.stop()
            stopped = time.time()
            wait_until(lambda: wall_clock_past(stopped + 3.5), timeout=10, what="3.5 s passing")
            d.start()
            report = wait_until(
                lambda: why_once(
                    d, "tick", lambda r: [s for s in r["slots"] if "catch-up" in s["detail"]]
                ),
                timeout=15,
            )
        late_runs = [s for s in fates(report, "ran") if "catch-up" in s["detail"]]
        assert len(late_runs) == 1, [(s["fate"], s["slot"], s["at"]) for s in report["slots"]]
        [late] = late_runs
        assert "policy latest" in late["detail"] and late["fate"] == "ran"
        missed = fates(report, "missed")
        assert len(missed) >= 2
        for entry in [*missed, late]:
            gap = entry["no_instance"]
            assert gap is not None, entry
            since = parse_time(gap["since"]).timestamp()
            until = parse_time(gap["until"]).timestamp()
            assert stopped - 2 < since <= stopped + 0.5
            assert until > stopped + 3
        assert "no instance was alive from" in missed[0]["detail"]

    def test_disabled_slots_say_when_and_by_whom(self, daemon: DaemonProcess) -> None:
        """``cron disable``: the slots after it have no run, and why says the job was
        disabled then, by the api; its summary says what stops the job."""
        daemon.add_job("--name", "poll", "--every", "1s", "--command", "true")
        wait_until(lambda: daemon.cli("cron", "runs", "--id", "poll", "--json").json())
        assert daemon.cli("cron", "disable", "poll").code == 0
        disabled_at = time.time()
        wait_until(lambda: wall_clock_past(disabled_at + 2.2), timeout=10, what="2.2 s passing")
        report = why(daemon, "poll")
        later = fates(report, "disabled")
        assert len(later) >= 2
        assert "by the api" in later[0]["detail"]
        assert report["blocked"]["reason"] == "disabled" and report["blocked"]["by"] == "api"
        assert report["summary"].startswith("disabled since")
        assert report["next"] is None

    def test_failures_pause_the_job_and_enable_resumes_it(self, daemon: DaemonProcess) -> None:
        """--pause-after 2: two failures in a row pause the schedule; cron show and cron
        why say so (paused after 2 failures since ...), the slots after it are paused;
        a manual run still works; cron enable resumes the schedule."""
        daemon.add_job(
            "--name", "flaky", "--every", "1s", "--shell", "exit 1", "--pause-after", "2"
        )

        def paused() -> dict[str, Any] | None:
            job: dict[str, Any] = daemon.cli("cron", "show", "flaky", "--json").json()
            return job if job["paused"] else None

        shown = wait_until(paused, timeout=15)
        assert shown["paused"]["failures"] == 2 and shown["next_run_at"] is None
        assert daemon.cli("cron", "next", "flaky", "--json").json() == []
        text = daemon.cli("cron", "show", "flaky").stdout
        assert "paused" in text and "after 2 failures in a row" in text
        paused_at = parse_time(shown["paused"]["at"]).timestamp()
        wait_until(lambda: wall_clock_past(paused_at + 2.2), timeout=10, what="2.2 s passing")
        report = why(daemon, "flaky")
        assert report["blocked"]["reason"] == "paused"
        assert report["summary"].startswith("paused after 2 failures in a row since")
        assert len(fates(report, "paused")) >= 2
        manual = daemon.cli("cron", "run", "flaky", "--wait", "--json").json()
        assert manual["trigger"] == "manual" and manual["status"] == "failed"
        resumed = daemon.cli("cron", "enable", "flaky", "--json").json()
        assert resumed["paused"] is None and resumed["next_run_at"] is not None


class TestTimeline:
    """The pure timeline, on recorded facts made by hand."""

    def job(self, **changes: Any) -> Job:
        base: dict[str, Any] = {
            "id": "j1",
            "name": "hourly",
            "schedule": Schedule(kind=ScheduleKind.EVERY, every_s=3600.0, anchor=START),
            "payload": ExecPayload(command="x"),
            "created_at": START,
            "updated_at": START,
        }
        base.update(changes)
        return Job(**base)

    def test_slots_while_disabled_and_after_reenabling(self) -> None:
        """Slots in a recorded disabled span are 'disabled'; after it, slots with no run
        and no recorded reason are 'no_record' (never guessed)."""
        job = self.job(
            standing=(
                Standing(
                    change=StandingChange.DISABLED,
                    at=START + timedelta(minutes=30),
                    by=JobSource.API,
                ),
                Standing(
                    change=StandingChange.ENABLED,
                    at=START + timedelta(hours=2, minutes=30),
                    by=JobSource.CONFIG,
                ),
            )
        )
        now = START + timedelta(hours=4, minutes=10)
        report = explain(job, runs=[], instances=[], since=START, now=now, grace_s=1.0, most=100)
        assert [e.fate for e in report.entries] == [
            Fate.DISABLED,
            Fate.DISABLED,
            Fate.NO_RECORD,
            Fate.NO_RECORD,
        ]
        assert report.summary.startswith("the next slot fires at")

    def test_absence_comes_from_the_instances_lifetimes(self) -> None:
        """A slot between two instances' lifetimes is in a recorded absence."""
        from gatewayd.why import absence_at, lifetimes

        first = Instance(
            instance_id="a",
            pid=1,
            host="h",
            started_at=START,
            lease_until=START + timedelta(minutes=10),
            state=InstanceState.STOPPED,
        )
        second = Instance(
            instance_id="b",
            pid=2,
            host="h",
            started_at=START + timedelta(hours=1),
            lease_until=START + timedelta(days=1),
        )
        spans = lifetimes([second, first], START + timedelta(hours=2))
        gap = absence_at(spans, START + timedelta(minutes=30))
        assert gap is not None
        assert gap.since == START + timedelta(minutes=10)
        assert gap.until == START + timedelta(hours=1)
        assert absence_at(spans, START + timedelta(minutes=5)) is None


class TestTimelineRuns:
    """Runs matched with their slots, and retries still to come."""

    def test_a_slot_with_its_run_is_shown_once_and_a_pending_retry_is_named(self) -> None:
        """A slot whose run's time differs by microseconds from the walked slot (an
        anchor kept to the millisecond) is the run's; a retry queued for later is
        ``retry_pending``."""
        from gatewayd.model import Run, RunStatus, Trigger

        job = TestTimeline().job()
        slot = START + timedelta(hours=1, microseconds=400)
        ran = Run(
            run_id="r1",
            job_id="j1",
            job_name="hourly",
            trigger=Trigger.SCHEDULE,
            status=RunStatus.FAILED,
            scheduled_for=slot,
            queued_at=slot,
            started_at=slot,
            ended_at=slot + timedelta(seconds=1),
            session_key="k1",
            error="exit 1",
        )
        retry = Run(
            run_id="r2",
            job_id="j1",
            job_name="hourly",
            trigger=Trigger.RETRY,
            status=RunStatus.QUEUED,
            scheduled_for=slot + timedelta(minutes=10),
            queued_at=slot + timedelta(seconds=1),
            session_key="k2",
            attempt=2,
        )
        now = START + timedelta(hours=1, minutes=5)
        report = explain(
            job, runs=[retry, ran], instances=[], since=START, now=now, grace_s=1.0, most=100
        )
        assert [(e.fate, e.run.run_id if e.run else None) for e in report.entries] == [
            (Fate.RAN, "r1"),
            (Fate.RETRY_PENDING, "r2"),
        ]
        assert "failed: exit 1" in report.entries[0].detail
