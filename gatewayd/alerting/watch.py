"""Raising alerts and pausing jobs, from recorded facts, as runs end and silences last.

The watcher judges each ending this instance records (a run's, or a slot
recorded missed) by :mod:`gatewayd.alerting.rules`: it stores the alerts the
ending raises, wakes the deliverer, and pauses a job that failed
``pause_after`` times in a row. At its start it judges again each watched
job's latest ending, which a crash may have left unjudged: an alert's key
makes raising it twice store it once. It also keeps the dead-man's switch:
it sleeps, on the injected clock, until the earliest job's silence reaches
its limit, and wakes early when a job changes or a watched job succeeds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

import anyio
import anyio.abc
import structlog

from gatewayd.alerting.delivery import Deliverer
from gatewayd.alerting.rules import (
    STREAK_REASONS,
    Raised,
    addressed,
    after_run,
    pause_due,
    silence,
    silence_deadline,
)
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import StoreError
from gatewayd.events import JOB
from gatewayd.model import ErrorKind, Job, Run, RunStatus
from gatewayd.racing import first_of
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.alerts")

# The runs read to judge an ending, beyond the streak its rules may need.
_RECENT_MARGIN = 50
_RECENT_MOST = 2000
_JOB_PAGE = 500
# After the store failed to answer, how long until the silences are judged again.
_STORE_RETRY = timedelta(seconds=5)


class Pauser(Protocol):
    async def pause(self, job_id: str, *, failures: int, run_id: str) -> Job | None: ...


def watched(job: Job) -> bool:
    """Whether the job's endings can raise an alert or pause it."""
    return bool(job.alerts.sinks) or job.pause_after is not None


class AlertWatcher:
    """See the module docstring; :meth:`after_run` is a run-finished listener."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        bus: Bus,
        jobs: Pauser,
        deliverer: Deliverer,
        host: str,
        instance_id: str,
    ) -> None:
        self._store = store
        self._clock = clock
        self._bus = bus
        self._jobs = jobs
        self._deliverer = deliverer
        self._host = host
        self._instance_id = instance_id
        self._changed = anyio.Event()

    async def after_run(self, run: Run, job: Job | None) -> None:
        """Judge an ending this instance recorded (``job`` is ``None`` for a skipped slot)."""
        if job is None:
            if run.status is not RunStatus.SKIPPED or run.error_kind is not ErrorKind.MISSED:
                return
            job = await self._store.get_job(run.job_id)
        if job is None or not watched(job):
            return
        await self._judge(job, run)
        if run.status is RunStatus.SUCCEEDED and job.alerts.expect_success_within_s is not None:
            self._changed.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Judge the endings a crash may have left unjudged, then keep the dead-man's
        switch, until cancelled."""
        task_status.started()
        await self._judge_latest_endings()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow_job_changes)
            while True:
                self._changed = anyio.Event()
                wake_at = await self._raise_silences()
                if wake_at is None:
                    await self._changed.wait()
                else:
                    await first_of(self._changed.wait, partial(self._clock.sleep_until, wake_at))

    # --- endings --------------------------------------------------------------------

    async def _recent(self, job: Job) -> list[Run]:
        need = max(job.alerts.after, job.pause_after or 0) + _RECENT_MARGIN
        return await self._store.list_runs(job.id, limit=min(need, _RECENT_MOST))

    async def _judge(self, job: Job, run: Run, recent: list[Run] | None = None) -> None:
        try:
            recent = recent if recent is not None else await self._recent(job)
            if job.alerts.sinks:
                last = await self._store.latest_alert(job.id, STREAK_REASONS)
                raised = after_run(job, run, recent, last)
                if raised is not None:
                    await self._raise(job, raised)
            failures = pause_due(job, run, recent)
            if failures is not None:
                await self._jobs.pause(job.id, failures=failures, run_id=run.run_id)
        except StoreError as exc:
            # The next start judges the job's latest ending again.
            log.warning("a run's ending could not be judged for alerts", error=exc.message)

    async def _raise(self, job: Job, raised: Raised) -> None:
        alerts = addressed(raised, job, host=self._host, instance=self._instance_id)
        stored = await self._store.record_alerts(alerts)
        for alert in stored:
            log.warning(
                "alert raised",
                alert_id=alert.alert_id,
                job=job.name,
                reason=alert.reason.value,
                sink=alert.sink,
            )
        if stored:
            self._deliverer.wake()

    async def _watched_jobs(self) -> list[Job]:
        found: list[Job] = []
        after: str | None = None
        while True:
            page = await self._store.list_jobs(after=after, limit=_JOB_PAGE)
            found.extend(job for job in page if watched(job))
            if len(page) < _JOB_PAGE:
                return found
            after = page[-1].name

    async def _judge_latest_endings(self) -> None:
        try:
            jobs = await self._watched_jobs()
        except StoreError as exc:
            log.warning("jobs' latest endings could not be judged for alerts", error=exc.message)
            return
        for job in jobs:
            try:
                recent = await self._recent(job)
            except StoreError as exc:
                log.warning("a job's latest ending could not be judged", error=exc.message)
                continue
            ended = next((r for r in recent if r.status.is_terminal), None)
            if ended is not None:
                await self._judge(job, ended, recent)

    # --- the dead-man's switch ------------------------------------------------------

    async def _raise_silences(self) -> datetime | None:
        """Raise the alert of each silence that reached its limit; when the next one will."""
        try:
            jobs = [j for j in await self._watched_jobs() if j.alerts.expect_success_within_s]
            now = self._clock.now()
            earliest: datetime | None = None
            for job in jobs:
                last = await self._store.latest_run_with(job.id, RunStatus.SUCCEEDED)
                raised = silence(job, last, now)
                if raised is not None:
                    await self._raise(job, raised)
                    continue
                deadline = silence_deadline(job, last)
                if deadline is not None and (earliest is None or deadline < earliest):
                    earliest = deadline
            return earliest
        except StoreError as exc:
            log.warning("silences could not be judged; trying again", error=exc.message)
            return self._clock.now() + _STORE_RETRY

    async def _follow_job_changes(self) -> None:
        while True:
            with self._bus.subscribe(internal=True, streams=frozenset({JOB})) as changes:
                async for _ in changes:
                    self._changed.set()
