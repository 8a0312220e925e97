"""Alerts on an in-process core (real pipeline, timer and store; a FakeClock; runs ended
by the test; sinks are real commands and a real local HTTP server).

The daemon-level promises (a restart between attempts, a hanging sink) are in
tests/test_alerts_daemon.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from gatewayd.alerting.rules import after_run, attempted, failure_streak, retry_delay
from gatewayd.alerting.values import (
    Alert,
    AlertAttempt,
    AlertReason,
    AlertState,
    SinkKind,
    SinkSpec,
)
from gatewayd.errors import InvalidInput
from gatewayd.model import AlertPolicy, ErrorKind, Job, Run, RunStatus, Trigger
from gatewayd.runners.base import ExecResult

from tests.harness import START, Harness, open_harness

pytestmark = pytest.mark.usefixtures("each_store")

FAILED = ExecResult(exit_code=1)


def file_sink(path: Path, name: str = "file") -> SinkSpec:
    """A command sink that appends each alert it gets, one JSON document a line."""
    return SinkSpec(
        name=name,
        kind=SinkKind.COMMAND,
        command=("sh", "-c", f'cat >> "{path}"; echo >> "{path}"'),
        retry_backoff_s=1.0,
    )


def received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Judged:
    """The runs whose endings every listener has heard of, the alerts' watcher among them
    (a listener added after it is called after it)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.seen: set[str] = set()
        h.pipeline.add_finished_listener(self._ended)

    async def _ended(self, run: Run, job: Job | None) -> None:
        self.seen.add(run.run_id)

    async def manual_run(self, job_id: str, result: ExecResult | None = None) -> Run:
        """Run the job by hand, end its run with ``result`` (success if none), and return
        the run once its ending has been judged."""
        h = self.h
        started = len(h.runner.started)
        asked = await h.run_job(job_id)
        execution = await h.runner.wait_started(started + 1)
        execution.finish(result)
        run_id = asked["run_id"]

        async def judged() -> bool:
            return run_id in self.seen

        await h.until(judged)
        run = await h.store.get_run(run_id)
        assert run is not None
        return run


async def alerts_of(h: Harness, job_id: str) -> list[Alert]:
    return list(reversed(await h.store.list_alerts(job_id=job_id, limit=100)))


class TestFailureStreaks:
    async def test_an_alert_after_n_failures_once_per_streak_then_recovery(
        self, tmp_path: Path
    ) -> None:
        """--alert-after 2: the second failure in a row raises one alert, the third none
        (within the cooldown), the first success a recovery; each reaches the sink,
        stored before it is delivered, with the job, runs, reason, streak and instance."""
        out = tmp_path / "alerts.jsonl"
        async with open_harness(tmp_path, sinks=[file_sink(out)]) as h:
            judged = Judged(h)
            job_id = await h.add(
                name="backup", every="1h", command="backup", alert=["file"], alert_after=2
            )
            first = await judged.manual_run(job_id, FAILED)
            assert await alerts_of(h, job_id) == []
            second = await judged.manual_run(job_id, FAILED)
            await judged.manual_run(job_id, FAILED)
            await judged.manual_run(job_id)

            async def two_delivered() -> list[Alert]:
                alerts = await alerts_of(h, job_id)
                done = [a for a in alerts if a.state is AlertState.DELIVERED]
                return alerts if len(done) == 2 else []

            alerts = await h.until(two_delivered)
            got = received(out)
        assert [a.reason for a in alerts] == [AlertReason.FAILURE, AlertReason.RECOVERY]
        assert [g["reason"] for g in got] == ["failure", "recovery"]
        failure = got[0]
        assert failure["job"] == {"id": job_id, "name": "backup"}
        assert failure["streak"] == 2
        assert failure["run_ids"] == [second.run_id, first.run_id]
        assert failure["instance"] == "test-instance" and failure["host"] == "test"
        assert got[1]["streak"] == 3
        assert all(a.state is AlertState.DELIVERED and len(a.attempts) == 1 for a in alerts)

    async def test_a_streak_that_goes_on_is_alerted_again_after_the_cooldown(
        self, tmp_path: Path
    ) -> None:
        """--alert-cooldown 1h: failures within the hour raise nothing more; the first
        failure an hour after the streak's alert raises it again."""
        out = tmp_path / "alerts.jsonl"
        async with open_harness(tmp_path, sinks=[file_sink(out)]) as h:
            judged = Judged(h)
            job_id = await h.add(
                name="sync", every="1d", command="sync", alert=["file"], alert_cooldown="1h"
            )
            await judged.manual_run(job_id, FAILED)
            h.clock.advance(30 * 60)
            await judged.manual_run(job_id, FAILED)
            h.clock.advance(31 * 60)
            await judged.manual_run(job_id, FAILED)
            alerts = await alerts_of(h, job_id)
        assert [(a.reason, a.streak) for a in alerts] == [
            (AlertReason.FAILURE, 1),
            (AlertReason.FAILURE, 3),
        ]

    async def test_a_job_naming_a_sink_the_config_lacks_is_refused(self, tmp_path: Path) -> None:
        """Bad input names the field and changes nothing."""
        async with open_harness(tmp_path) as h:
            with pytest.raises(InvalidInput, match=r"alerts\.sinks\[0\]: no alert sink 'ops'"):
                await h.add(name="x", every="1h", command="x", alert=["ops"])
            assert await h.store.list_jobs() == []


class TestMissedSlots:
    async def test_missed_slots_alert_once_per_cooldown(self, tmp_path: Path) -> None:
        """Slots recorded missed (the timer held off past the misfire grace) raise one
        alert, not one per slot; the alert names the missed record."""
        out = tmp_path / "alerts.jsonl"
        async with open_harness(tmp_path, sinks=[file_sink(out)]) as h:
            job_id = await h.add(
                name="minutely", every="1m", command="x", alert=["file"], catchup="none"
            )
            h.runner.auto_finish = True
            await h.advance_to(START + timedelta(minutes=10))

            async def missed() -> list[Run]:
                runs = [r for r in await h.runs(job_id) if r.error_kind is ErrorKind.MISSED]
                return runs if len(runs) >= 5 else []

            records = await h.until(missed)

            async def alerted() -> list[Alert]:
                return [a for a in await alerts_of(h, job_id) if a.reason is AlertReason.MISSED]

            await h.until(alerted)
            await h.alerts.drained()  # every missed slot of the plan has been judged
            [alert] = await alerted()
            assert alert.run_ids[0] in {r.run_id for r in records}


class TestPauseAfterFailures:
    async def test_n_failures_pause_the_schedule_and_enable_resumes_it(
        self, tmp_path: Path
    ) -> None:
        """--pause-after 2: the second failure in a row pauses the job (recorded, with its
        failures and run); its timer fires nothing, a manual run still works, and
        ``cron enable`` resumes it from the next slot."""
        async with open_harness(tmp_path) as h:
            judged = Judged(h)
            job_id = await h.add(name="flaky", every="10m", command="x", pause_after=2)
            await judged.manual_run(job_id, FAILED)
            last = await judged.manual_run(job_id, FAILED)

            async def paused() -> Job | None:
                job = await h.store.get_job(job_id)
                return job if job is not None and job.paused is not None else None

            job = await h.until(paused)
            assert job is not None and job.paused is not None
            assert (job.paused.failures, job.paused.run_id) == (2, last.run_id)
            assert job.next_slot is None and job.enabled
            runs_before = len(await h.runs(job_id))
            await h.advance_to(START + timedelta(hours=1))
            assert len(await h.runs(job_id)) == runs_before  # no slot fired
            await judged.manual_run(job_id)  # a manual run works while paused
            resumed = await h.gateway.jobs.set_enabled(job_id, True)
        assert resumed.paused is None
        assert resumed.next_slot is not None and resumed.next_slot > START + timedelta(hours=1)
        changes = [c.change.value for c in resumed.standing]
        assert changes == ["paused", "resumed"]


class TestDeadMansSwitch:
    async def test_no_success_within_the_window_alerts_once_per_silence(
        self, tmp_path: Path
    ) -> None:
        """--expect-success-within 1h on a FakeClock: a job that never succeeded alerts an
        hour after its creation, once; a success starts a new silence, alerted an hour
        after that success."""
        out = tmp_path / "alerts.jsonl"
        async with open_harness(tmp_path, sinks=[file_sink(out)]) as h:
            judged = Judged(h)
            job_id = await h.add(
                name="nightly",
                cron="0 3 * * *",
                command="x",
                alert=["file"],
                expect_success_within="1h",
            )
            await h.clock.wait_for_sleeper(until=START + timedelta(hours=1))
            h.clock.advance(3600)

            async def silences(count: int) -> list[Alert]:
                found = [a for a in await alerts_of(h, job_id) if a.reason is AlertReason.SILENCE]
                return found if len(found) >= count else []

            first = (await h.until(lambda: silences(1)))[0]
            assert first.raised_at == START + timedelta(hours=1)
            h.clock.advance(1800)
            success = await judged.manual_run(job_id)
            assert success.ended_at is not None
            second_due = success.ended_at + timedelta(hours=1)
            await h.clock.wait_for_sleeper(until=second_due)
            h.clock.set(second_due)
            found = await h.until(lambda: silences(2))
        assert len(found) == 2
        assert found[1].raised_at == second_due
        assert found[1].run_ids == (success.run_id,)


class TestDeliveryRules:
    """The pure rules the deliverer and the watcher follow."""

    SINK = SinkSpec(name="s", kind=SinkKind.COMMAND, command=("x",), retry_backoff_s=5.0)

    def test_backoff_doubles_from_the_sinks_and_stops_at_ten_minutes(self) -> None:
        assert [retry_delay(self.SINK, n) for n in (1, 2, 3, 7, 8, 30)] == [
            5.0,
            10.0,
            20.0,
            320.0,
            600.0,
            600.0,
        ]

    def test_the_last_failed_attempt_marks_the_alert_failed_with_its_error(self) -> None:
        sink = SinkSpec(name="s", kind=SinkKind.COMMAND, command=("x",), max_attempts=2)
        alert = Alert(
            alert_id="k@s",
            key="k",
            sink="s",
            reason=AlertReason.MISSED,
            job_id="j",
            job_name="j",
            message="m",
            raised_at=START,
            host="h",
            instance="i",
            next_attempt_at=START,
        )
        once = attempted(alert, sink, AlertAttempt(number=1, at=START, duration_ms=0, error="e1"))
        assert once.state is AlertState.PENDING
        assert once.next_attempt_at == START + timedelta(seconds=5)
        twice = attempted(once, sink, AlertAttempt(number=2, at=START, duration_ms=0, error="e2"))
        assert twice.state is AlertState.FAILED and twice.last_error == "e2"
        assert len(twice.attempts) == 2

    def test_runs_that_neither_fail_nor_succeed_leave_a_streak_alone(self) -> None:
        def run(n: int, status: RunStatus) -> Run:
            return Run(
                run_id=f"r{n}",
                job_id="j",
                job_name="j",
                trigger=Trigger.SCHEDULE,
                status=status,
                queued_at=START,
                ended_at=START,
                session_key="k",
            )

        newest_first = [
            run(4, RunStatus.FAILED),
            run(3, RunStatus.SKIPPED),
            run(2, RunStatus.TIMED_OUT),
            run(1, RunStatus.SUCCEEDED),
            run(0, RunStatus.FAILED),
        ]
        assert [r.run_id for r in failure_streak(newest_first)] == ["r4", "r2"]
        job = Job(
            id="j",
            name="j",
            schedule=_every(),
            payload=_payload(),
            alerts=AlertPolicy(sinks=("s",), after=2),
            created_at=START,
            updated_at=START,
        )
        raised = after_run(job, newest_first[0], newest_first, None)
        assert raised is not None and raised.streak == 2


def _every() -> Any:
    from gatewayd.model import Schedule, ScheduleKind

    return Schedule(kind=ScheduleKind.EVERY, every_s=60.0, anchor=START)


def _payload() -> Any:
    from gatewayd.model import ExecPayload

    return ExecPayload(command="x")


class TestBadInput:
    @pytest.mark.parametrize(
        ("flat", "named"),
        [
            ({"alert_after": 0}, "alerts.after"),
            ({"alert_cooldown": "-1s"}, "alerts.cooldown_s"),
            ({"expect_success_within": "0s"}, "alerts.expect_success_within_s"),
            ({"pause_after": 1001}, "pause_after"),
            ({"alert": ["bad name!"]}, r"alerts.sinks\[0\]"),
        ],
    )
    async def test_refused_naming_the_field(
        self, tmp_path: Path, flat: dict[str, Any], named: str
    ) -> None:
        """Bad input names the field and changes nothing."""
        async with open_harness(tmp_path) as h:
            with pytest.raises(InvalidInput, match=named):
                await h.add(name="x", every="1h", command="x", **flat)
            assert await h.store.list_jobs() == []
