"""Reading: jobs with their state, the status, sessions, the event stream, the loop's lag.

Reads never change anything (I8): not a job's next slot, not a run, not a session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from gatewayd import __version__, bounds
from gatewayd.alerting.values import Alert
from gatewayd.api.values import (
    Identity,
    JobState,
    LagProbe,
    SessionState,
    Status,
    StoreHealthReport,
    StreamEnd,
)
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import InvalidInput, NotFound, StoreError
from gatewayd.logs import dropped_lines
from gatewayd.model import MAIN_SESSION_KEY, Job, Run, RunStatus, Session
from gatewayd.planning import Upcoming, job_upcoming
from gatewayd.runs import RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.sessions import inbox_path, tail_jsonl, transcript_path
from gatewayd.store.base import Store, StoreHealth
from gatewayd.why import Why, explain, since_default

# With more jobs than this, the newest run of every job is read in one query.
_LATEST_OF_ALL = 50


Send = Callable[[dict[str, Any]], Awaitable[None]]


class Reads:
    """The operations that read, and the lookups the others share."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        scheduler: Scheduler,
        identity: Identity,
        bus: Bus,
    ) -> None:
        self._store = store
        self._clock = clock
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._bus = bus
        self.identity = identity
        self._fault_since: datetime | None = None
        store.watch_health(self._health_changed)

    def _health_changed(self, health: StoreHealth) -> None:
        if health.writable:
            self._fault_since = None
        elif self._fault_since is None:
            self._fault_since = self._clock.now()

    # --- jobs -------------------------------------------------------------------------

    def upcoming(self, job: Job, *, count: int, after: datetime | None) -> list[Upcoming]:
        """The next ``count`` slots of ``job`` (``cron next``), as its timer walks them."""
        return job_upcoming(job, count=count, now=self._clock.now(), after=after)

    async def why(self, job: Job, *, since: datetime | None) -> Why:
        """``cron why``: what became of the job's slots since ``since`` (default: a day ago)."""
        now = self._clock.now()
        since = since or since_default(now)
        most = bounds.WHY_SLOTS.largest
        runs: list[Run] = []
        before: str | None = None
        while len(runs) < most:
            page = await self._store.list_runs(job.id, limit=bounds.RUN_PAGE.largest, before=before)
            runs.extend(page)
            if (
                len(page) < bounds.RUN_PAGE.largest
                or min(r.scheduled_for or r.queued_at for r in page) < since
            ):
                break
            before = page[-1].run_id
        # On a worker thread: a day of a schedule in seconds is tens of thousands of slots.
        return await anyio.to_thread.run_sync(
            partial(
                explain,
                job,
                runs=runs,
                instances=await self._store.instances(),
                since=since,
                now=now,
                grace_s=self._pipeline.settings.catchup.grace_s,
                most=most,
            )
        )

    async def alerts(self, *, job: Job | None, limit: int) -> list[Alert]:
        """The latest alerts, of one job if given, newest first."""
        bounds.ALERT_PAGE.check(limit)
        return await self._store.list_alerts(job_id=None if job is None else job.id, limit=limit)

    async def job(self, ref: str) -> Job:
        """The job whose id, else whose name, is ``ref``."""
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("job: expected a job id or name")
        job = await self._store.find_job(ref)
        if job is None:
            raise NotFound(f"no job with id or name {ref!r}")
        return job

    async def states(self, jobs: Sequence[Job]) -> list[JobState]:
        """Each job with the run that runs now, and its latest run."""
        ids = None if len(jobs) > _LATEST_OF_ALL else [j.id for j in jobs]
        latest = await self._store.latest_runs(ids)
        running: dict[str, str] = {}
        for run in await self._store.live_runs():
            if run.status is RunStatus.RUNNING:
                running.setdefault(run.job_id, run.run_id)
        return [
            JobState(job=job, running_run_id=running.get(job.id), last_run=latest.get(job.id))
            for job in jobs
        ]

    async def job_state(self, job: Job) -> JobState:
        return (await self.states([job]))[0]

    async def list_jobs(
        self,
        *,
        include_disabled: bool,
        limit: int = bounds.JOB_PAGE.default,
        after: str | None = None,
    ) -> list[JobState]:
        """A page of jobs by name: up to ``limit`` whose names sort after ``after``."""
        bounds.JOB_PAGE.check(limit)
        jobs = await self._store.list_jobs(
            enabled_only=not include_disabled, after=after, limit=limit
        )
        return await self.states(jobs)

    # --- the daemon -------------------------------------------------------------------

    async def status(self) -> Status:
        """The status; a store that cannot be read now leaves its counts out."""
        total_jobs = enabled_jobs = runs = instances = None
        try:
            total_jobs, enabled_jobs = await self._store.count_jobs()
            runs = await self._store.count_runs()
            now = await self._store.now()
            instances = tuple(i for i in await self._store.instances() if i.lives_at(now))
        except StoreError:
            pass  # the health below names the fault
        health = self._store.health
        return Status(
            version=__version__,
            identity=self.identity,
            now=self._clock.now(),
            jobs_total=total_jobs,
            jobs_enabled=enabled_jobs,
            runs=runs,
            instances=instances,
            active_runs=self._pipeline.active_count,
            next_wake_at=self._scheduler.next_wake_at,
            event_subscribers=self._bus.subscribers,
            store=StoreHealthReport(
                fault=health.fault,
                since=self._fault_since,
                held_writes=health.held,
                counters=self._store.stats(),
            ),
            log_lines_dropped=dropped_lines(),
        )

    async def probe_lag(self, seconds: float) -> LagProbe:
        """Measure the event loop's lag for ``seconds``: how late 1 ms timers fire."""
        lags: list[float] = []
        with anyio.move_on_after(seconds):
            while True:
                before = self._clock.monotonic()
                await anyio.sleep(0.001)
                lags.append((self._clock.monotonic() - before - 0.001) * 1000)
        lags.sort()
        if not lags:
            return LagProbe(samples=0)
        return LagProbe(
            samples=len(lags),
            p50_ms=lags[len(lags) // 2],
            p99_ms=lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            max_ms=lags[-1],
        )

    # --- sessions and events ----------------------------------------------------------

    async def sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        bounds.SESSION_PAGE.check(limit)
        return await self._store.list_sessions(limit=limit, before=before)

    async def session(self, key: str) -> SessionState:
        """A session with the tails of its transcript (and, for ``main``, of its inbox)."""
        session = await self._store.get_session(key)
        if session is None and key != MAIN_SESSION_KEY:
            raise NotFound(f"no session with key {key!r}")
        state_dir = self.identity.state_dir
        transcript = await anyio.to_thread.run_sync(tail_jsonl, transcript_path(state_dir, key))
        inbox = None
        if key == MAIN_SESSION_KEY:
            inbox = await anyio.to_thread.run_sync(tail_jsonl, inbox_path(state_dir))
        return SessionState(key=key, session=session, transcript_tail=transcript, inbox_tail=inbox)

    async def events(self, send: Send, *, since: int | None, limit: int, follow: bool) -> StreamEnd:
        """Send the event history (after ``since``, or the last ``limit``), then live events.

        Live events come from a bounded subscription: a reader too slow to keep up
        gets a gap marker, and the stream ends.
        """
        last = since or 0
        with self._bus.subscribe() as subscription:
            if since is None:
                history = await self._store.latest_events(limit=limit)
            else:
                history = await self._store.events_after(since, limit=limit)
            for envelope in history:
                await send(envelope)
                last = envelope["seq"]
            if not follow:
                return StreamEnd(last_seq=last, follow=False)
            async for envelope in subscription:
                seq = envelope.get("seq")
                if seq is not None and seq <= last:
                    continue
                await send(envelope)
                last = seq if seq is not None else last
            return StreamEnd(last_seq=last, follow=True, dropped=subscription.dropped)
