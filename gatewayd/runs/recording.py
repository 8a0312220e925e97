"""Recording a run's transitions, each with its events and the session rows they move.

Every transition is one store write that carries its events (see the bus):
``queued`` (or ``skipped``) with ``run.queued`` (``run.finished``), ``running``
with ``run.started`` and the lifecycle ``start``, and the one terminal status
with the lifecycle ``end``/``error`` (unless published ahead of it, I5) and
``run.finished``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import RunAlreadyEnded
from gatewayd.events import (
    Event,
    LifecycleEvent,
    RunFinished,
    RunQueued,
    RunStarted,
    SessionEnded,
    SessionFailed,
    SessionStarted,
)
from gatewayd.ids import new_session_id
from gatewayd.model import MAIN_SESSION_KEY, Job, Run, RunOutcome, RunStatus
from gatewayd.runners.base import ExecResult
from gatewayd.runs.handles import RunHandle
from gatewayd.runs.outcomes import ended_by_itself, session_stop
from gatewayd.store.base import Publication, Store
from gatewayd.store.transitions import Expected, finished, started

log = structlog.get_logger("gatewayd.runs")

Ended = Callable[[Run, Job | None], Awaitable[None]]


class Recorder:
    """Writes runs' transitions; calls ``on_ended(run, job)`` after each ending is recorded."""

    def __init__(
        self, *, store: Store, bus: Bus, clock: Clock, instance_id: str, on_ended: Ended
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._instance_id = instance_id
        self._on_ended = on_ended
        self._main_session_id: str | None = None

    async def record_new(
        self,
        runs: Sequence[Run],
        *,
        now: datetime,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
        expected: Expected | None = None,
    ) -> None:
        """Record new runs with their ``queued`` (or, if skipped, ``finished``) events.

        The write is seen through even if the caller is cancelled (see the bus), and
        the caller launches the runs before a cancellation can land: a run
        recorded is always driven to its ending. ``now`` is when they were decided;
        ``expected``, what the decision saw (see ``Store.record_runs``).
        """

        def write(publication: Publication) -> Awaitable[None]:
            return self._store.record_runs(
                runs,
                advance_job=advance_job,
                next_slot=next_slot,
                expected=expected,
                publication=publication,
            )

        await self._bus.publish_with(
            write,
            *(
                (RunQueued if run.status is RunStatus.QUEUED else RunFinished).of(run, now)
                for run in runs
            ),
        )

    async def record_start(
        self,
        run: Run,
        job: Job,
        handle: RunHandle,
        *,
        started_at: datetime,
        pid: int | None = None,
        pid_start: int | None = None,
        ended: RunOutcome | ExecResult | None = None,
    ) -> Run:
        """Record the run ``running``, with its ``started`` and lifecycle ``start`` events.

        With ``ended`` (work that ended before its start was recorded), the run's
        ending and its events are recorded in the same write.
        """
        if run.session_key == MAIN_SESSION_KEY:
            session_id = await self.main_session()
        else:
            session_id = new_session_id()  # an isolated session is new with each run
        handle.session_id = session_id
        owner = self._instance_id
        expected = started(run, started_at=started_at, owner=owner, pid=pid, pid_start=pid_start)
        events: list[Event] = [
            RunStarted.of(expected, started_at),
            SessionStarted(
                ts=started_at,
                run_id=run.run_id,
                job_id=run.job_id,
                session_key=run.session_key,
                session_id=session_id,
            ),
        ]
        outcome = ended
        if isinstance(outcome, ExecResult):
            outcome = ended_by_itself(expected, outcome, at=self._clock.now())
        if outcome is not None:
            events += await self._ending_events(expected, outcome, handle)

        def write(publication: Publication) -> Awaitable[Run]:
            return self._store.start_run(
                run.run_id,
                started_at=started_at,
                owner=owner,
                pid=pid,
                pid_start=pid_start,
                outcome=outcome,
                publication=publication,
            )

        run = await self._bus.publish_with(write, *events)
        handle.started = True
        if outcome is not None:
            await self._ended(run, job, handle)
        return run

    async def finish(
        self, run: Run, job: Job | None, outcome: RunOutcome, handle: RunHandle | None = None
    ) -> None:
        """Record the run's terminal status, with its lifecycle ending if not yet published.

        A run that already has its ending keeps it (logged, not raised).
        """
        try:
            events = await self._ending_events(run, outcome, handle)
            run = await self._bus.publish_with(
                lambda publication: self._store.finish_run(
                    run.run_id, outcome, publication=publication
                ),
                *events,
            )
        except RunAlreadyEnded:
            log.warning("run already had its ending", run_id=run.run_id)
            return
        await self._ended(run, job, handle)

    async def finish_if_live(
        self, run: Run, job: Job | None, outcome: RunOutcome, handle: RunHandle | None = None
    ) -> None:
        """Record the run's ending unless the store has one already."""
        current = await self._store.get_run(run.run_id)
        if current is not None and current.status.is_live:
            await self.finish(current, job, outcome, handle)

    async def settle_quietly(
        self, run: Run, job: Job | None, outcome: RunOutcome, handle: RunHandle
    ) -> None:
        """Record a run's ending on a path of last resort; a failure is logged, never raised.

        A run task's failure never escapes into the daemon's task group: if even
        this ending cannot be recorded (the store failing reads too), the run stays
        live in the store, unwatched, and the sweeper settles it.
        """
        try:
            await self.finish_if_live(run, job, outcome, handle)
        except Exception:
            log.exception("could not record a run's ending; the sweeper will", run_id=run.run_id)

    async def announce_end(self, run: Run, outcome: RunOutcome, handle: RunHandle | None) -> None:
        """Publish the lifecycle ending of a run that started, once, ahead of its own ending."""
        event = await self._end_event(run, outcome, handle)
        if event is not None:
            await self._bus.publish(event)
            if handle is not None:
                handle.lifecycle_ended = True

    async def main_session(self) -> str:
        """The id of the shared ``main`` session, as the store keeps it for every instance."""
        if self._main_session_id is None:
            self._main_session_id = await self._store.main_session_id(new_session_id())
        return self._main_session_id

    async def _session_id(self, run: Run, handle: RunHandle | None) -> str:
        if handle is not None and handle.session_id is not None:
            return handle.session_id
        if run.session_key == MAIN_SESSION_KEY:
            return await self.main_session()
        session = await self._store.get_session(run.session_key)
        return session.session_id if session is not None else new_session_id()

    async def _end_event(
        self, run: Run, outcome: RunOutcome, handle: RunHandle | None
    ) -> LifecycleEvent | None:
        """The lifecycle ``end`` or ``error`` of a run that started; ``None`` if published."""
        if run.status is not RunStatus.RUNNING or (handle is not None and handle.lifecycle_ended):
            return None
        common: dict[str, Any] = {
            "ts": self._clock.now(),
            "run_id": run.run_id,
            "job_id": run.job_id,
            "session_key": run.session_key,
            "session_id": await self._session_id(run, handle),
            "stop_reason": session_stop(outcome),
        }
        if outcome.status is RunStatus.SUCCEEDED:
            return SessionEnded(**common)
        return SessionFailed(error=outcome.error, error_kind=outcome.error_kind, **common)

    async def _ending_events(
        self, run: Run, outcome: RunOutcome, handle: RunHandle | None
    ) -> list[Event]:
        """The lifecycle ending (unless published already), then ``finished``."""
        lifecycle = await self._end_event(run, outcome, handle)
        events: list[Event] = [] if lifecycle is None else [lifecycle]
        events.append(RunFinished.of(finished(run, outcome), self._clock.now()))
        return events

    async def _ended(self, run: Run, job: Job | None, handle: RunHandle | None) -> None:
        if handle is not None:
            handle.lifecycle_ended = True
        log.info(
            "run finished",
            run_id=run.run_id,
            job=run.job_name,
            status=run.status.value,
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
        )
        await self._on_ended(run, job)
