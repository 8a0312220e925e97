"""Raising alerts and pausing jobs, from recorded facts, as runs end and silences last.

The watcher judges each ending this instance records (a run's, or a slot
recorded missed, which it queues to judge off the timer's path) by
:mod:`gatewayd.alerting.rules`: it stores the alerts the
ending raises, wakes the deliverer, and pauses a job that failed
``pause_after`` times in a row. At its start it judges again each watched
job's latest ending, which a crash may have left unjudged: an alert's key
makes raising it twice store it once. It also keeps the dead-man's switch:
it sleeps, on the injected clock, until the earliest job's silence reaches
its limit, and wakes early when a job changes (it reads that job again) or a
watched job succeeds.
"""

from __future__ import annotations

import collections
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
from gatewayd.alerting.values import AlertReason
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import GatewaydError, StoreError
from gatewayd.events import JOB
from gatewayd.model import ErrorKind, Job, Run, RunStatus
from gatewayd.racing import first_of
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.alerts")

# The runs read to judge an ending, beyond the streak its rules may need.
_RECENT_MARGIN = 50
_RECENT_MOST = 2000
# More jobs changed than this are read again in one pass over all jobs.
_READ_ONE_BY_ONE = 50
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
        # The dead-man's switches: when each job's silence reaches its limit (with the
        # job and its last success, as they were read), and the jobs to read again.
        self._silences: dict[str, tuple[datetime, Job, Run | None]] = {}
        self._stale: set[str] = set()
        self._stale_all = True
        self._started = False  # the latest endings a crash may have left are judged once
        # Missed slots the timer recorded, to judge off its path.
        self._missed: collections.deque[tuple[Run, Job]] = collections.deque()
        self._missed_added = anyio.Event()
        self._pending = 0
        self._idle = anyio.Event()

    async def after_run(self, run: Run, job: Job | None) -> None:
        """Judge a run's ending this instance recorded (a run-finished listener)."""
        if job is None or not watched(job):
            return
        await self._judge(job, run)
        if run.status is RunStatus.SUCCEEDED and job.alerts.expect_success_within_s is not None:
            self._look_again(job.id)

    def skipped(self, run: Run, job: Job) -> None:
        """Queue a slot recorded missed for judging (a skipped-slot listener: the timer
        records it, and does not wait for the judgment)."""
        if run.error_kind is ErrorKind.MISSED and job.alerts.sinks:
            self._missed.append((run, job))
            self._pending += 1
            self._missed_added.set()

    async def drained(self) -> None:
        """Wait until every missed slot queued so far has been judged."""
        while self._pending:
            if self._idle.is_set():
                self._idle = anyio.Event()  # the judge sets it once the queue is empty
            await self._idle.wait()

    async def _judge_missed(self) -> None:
        while True:
            while self._missed:
                run, job = self._missed.popleft()
                try:
                    await self._judge(job, run)
                finally:
                    self._pending -= 1
            self._idle.set()
            self._missed_added = anyio.Event()
            await self._missed_added.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Judge the endings a crash may have left unjudged, then keep the dead-man's
        switch, until cancelled."""
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow_job_changes)
            tg.start_soon(self._judge_missed)
            while True:
                self._changed = anyio.Event()
                wake_at = await self._raise_silences()
                if wake_at is None:
                    await self._changed.wait()
                else:
                    await first_of(self._changed.wait, partial(self._clock.sleep_until, wake_at))

    def _look_again(self, job_id: str) -> None:
        self._stale.add(job_id)
        self._changed.set()

    # --- endings --------------------------------------------------------------------

    async def _recent(self, job: Job) -> list[Run]:
        need = max(job.alerts.after, job.pause_after or 0) + _RECENT_MARGIN
        return await self._store.list_runs(job.id, limit=min(need, _RECENT_MOST))

    async def _judge(self, job: Job, run: Run, recent: list[Run] | None = None) -> None:
        try:
            recent = recent if recent is not None else await self._recent(job)
            if job.alerts.sinks:
                last = await self._store.latest_alert(job.id, STREAK_REASONS)
                missed = None
                if run.error_kind is ErrorKind.MISSED:
                    missed = await self._store.latest_alert(job.id, (AlertReason.MISSED,))
                raised = after_run(job, run, recent, last, missed)
                if raised is not None:
                    await self._raise(job, raised)
            failures = pause_due(job, run, recent)
            if failures is not None:
                await self._jobs.pause(job.id, failures=failures, run_id=run.run_id)
        except GatewaydError as exc:
            # The next start judges the job's latest ending again.
            log.warning("a run's ending could not be judged for alerts", error=exc.message)
        except Exception:
            log.exception("judging a run's ending for alerts failed", run_id=run.run_id)

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
        return [job for job in await self._store.list_jobs() if watched(job)]

    async def _judge_latest_endings(self, jobs: list[Job]) -> None:
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
        """Look again at the jobs that changed (every job, the first time, when it also
        judges their latest endings, and when many changed at once), raise the alert of
        each silence that reached its limit, and say when the next one will."""
        try:
            if len(self._stale) > _READ_ONE_BY_ONE:
                self._stale_all = True  # many changed (a batch added): one read of them all
            if self._stale_all:
                self._stale.clear()
                jobs = await self._watched_jobs()
                if not self._started:
                    await self._judge_latest_endings(jobs)
                    self._started = True
                self._silences.clear()
                for job in jobs:
                    await self._plan_silence(job)
                self._stale_all = False
            while self._stale:
                job_id = next(iter(self._stale))
                changed = await self._store.get_job(job_id)
                self._silences.pop(job_id, None)
                if changed is not None:
                    await self._plan_silence(changed)
                self._stale.discard(job_id)
            now = self._clock.now()
            for job_id, (deadline, job, last) in list(self._silences.items()):
                if deadline <= now:
                    raised = silence(job, last, now)
                    if raised is not None:
                        await self._raise(job, raised)
                    del self._silences[job_id]  # once per silence: a success or a change plans anew
        except StoreError as exc:
            log.warning("silences could not be judged; trying again", error=exc.message)
            return self._clock.now() + _STORE_RETRY
        except Exception:  # never the end of the daemon: tried again, and said loudly
            log.exception("judging the silences failed; trying again")
            return self._clock.now() + _STORE_RETRY
        return min((deadline for deadline, _, _ in self._silences.values()), default=None)

    async def _plan_silence(self, job: Job) -> None:
        """Note when the job's silence reaches its limit, if it has a dead-man's switch."""
        if not job.alerts.expect_success_within_s:
            return
        last = await self._store.latest_run_with(job.id, RunStatus.SUCCEEDED)
        deadline = silence_deadline(job, last)
        if deadline is not None:
            self._silences[job.id] = (deadline, job, last)

    async def _follow_job_changes(self) -> None:
        while True:
            with self._bus.subscribe(internal=True, streams=frozenset({JOB})) as changes:
                async for envelope in changes:
                    job_id = envelope.get("job_id")
                    if isinstance(job_id, str):
                        self._look_again(job_id)
            # It fell behind (a gap): every job is looked at again.
            self._stale_all = True
            self._changed.set()
