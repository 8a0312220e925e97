"""The timer with a FakeClock: it sleeps until the next slot, never polls, never loses a slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from gatewayd.model import ErrorKind, RunStatus, Trigger

from tests.harness import START, open_harness

# The daemon-level pipeline tests run over every store.
pytestmark = pytest.mark.usefixtures("each_store")


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


class TestSleeping:
    """The scheduler sleeps until exactly the next due slot: no polling tick."""

    async def test_sleeps_until_the_next_slot(self, tmp_path: Path) -> None:
        """With one job every 10 minutes, the only wake-up is at the slot."""
        async with open_harness(tmp_path) as h:
            await h.add(name="ten", every="10m", command="true")
            assert await h.clock.wait_for_sleeper() == at(600) - h.scheduler.claims_ahead
            assert h.scheduler.next_wake_at == at(600)

    async def test_sleeps_forever_without_jobs(self, tmp_path: Path) -> None:
        """No job, no timer: nothing wakes the scheduler but a change."""
        async with open_harness(tmp_path) as h:
            await h.until(h.asleep)
            assert h.clock.next_deadline is None
            assert h.scheduler.next_wake_at is None

    async def test_wakes_early_when_a_sooner_job_is_added(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.add(name="hourly", every="1h", command="true")
            ahead = h.scheduler.claims_ahead
            assert await h.clock.wait_for_sleeper() == at(3600) - ahead
            await h.add(name="minutely", every="1m", command="true")
            assert await h.clock.wait_for_sleeper(until=at(60) - ahead) == at(60) - ahead


class TestFiring:
    """Each slot is recorded as exactly one run, and the next slot follows it."""

    async def test_every_slot_fires_once(self, tmp_path: Path) -> None:
        """I7: three slots of a 10 s job give three scheduled runs with distinct ids."""
        async with open_harness(tmp_path) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="tick", every="10s", command="true")
            for n in (1, 2, 3):
                await h.advance_to(at(10 * n))
                runs = await h.until(partial(h.ended_runs, job_id, n, RunStatus.SUCCEEDED))
            assert [r.scheduled_for for r in runs] == [at(10), at(20), at(30)]
            assert {r.trigger for r in runs} == {Trigger.SCHEDULE}
            assert len({r.run_id for r in runs}) == 3
            job = await h.store.get_job(job_id)
            assert job is not None and job.next_slot == at(40)

    async def test_new_york_hourly_across_spring_forward(self, tmp_path: Path) -> None:
        """An hourly New York job fires at 01:00 EST, 03:00 EDT, 04:00 EDT on 2026-03-08."""
        start = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)
        async with open_harness(tmp_path, start=start) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="ny", cron="0 * * * *", tz="America/New_York", command="true")
            fired = []
            for n in (1, 2, 3):
                wake = await h.clock.wait_for_sleeper() + h.scheduler.claims_ahead
                fired.append(wake)
                await h.advance_to(wake)
                await h.until(partial(h.ended_runs, job_id, n, RunStatus.SUCCEEDED))
            assert fired == [
                datetime(2026, 3, 8, 6, tzinfo=UTC),
                datetime(2026, 3, 8, 7, tzinfo=UTC),
                datetime(2026, 3, 8, 8, tzinfo=UTC),
            ]
            runs = await h.until(lambda: h.ended_runs(job_id, 3, RunStatus.SUCCEEDED))
            assert [r.scheduled_for for r in runs] == fired

    async def test_an_hour_ahead_in_no_time_is_one_catchup(self, tmp_path: Path) -> None:
        """I7: jumping an hour over a 10-minute job records 5 missed slots and 1 catch-up run."""
        async with open_harness(tmp_path) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="ten", every="10m", command="true")
            await h.advance_to(at(3600 + 5 * 60))
            runs = await h.until(lambda: h.ended_runs(job_id, 6, None))
            skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
            ran = [r for r in runs if r.status is not RunStatus.SKIPPED]
            assert [r.scheduled_for for r in skipped] == [at(600 * n) for n in range(1, 6)]
            assert {r.error_kind for r in skipped} == {ErrorKind.MISSED}
            assert [(r.trigger, r.scheduled_for) for r in ran] == [(Trigger.CATCHUP, at(3600))]
            assert h.scheduler.next_wake_at == at(4200)

    async def test_disabled_jobs_do_not_fire(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="off", every="10s", command="true", enabled=False)
            await h.until(h.asleep)
            assert h.scheduler.next_wake_at is None
            await h.advance_to(at(100))
            assert await h.runs(job_id) == []

    async def test_reads_change_nothing(self, tmp_path: Path) -> None:
        """I8: listing, showing and status leave next_run_at and the timer as they were."""
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="j", every="1h", command="true")
            before = await h.gateway.reads.list_jobs(include_disabled=True)
            wake = h.scheduler.next_wake_at
            for _ in range(10):
                await h.gateway.reads.status()
                await h.gateway.reads.job_state(await h.gateway.reads.job(job_id))
                await h.gateway.reads.list_jobs(include_disabled=True)
            assert await h.gateway.reads.list_jobs(include_disabled=True) == before
            assert h.scheduler.next_wake_at == wake
