"""The one run pipeline: claim, record, execute, finish (invariant I3).

Scheduled, catch-up and manual runs all enter here. For each run:

1. its id is minted and stored as ``queued`` (or ``skipped``) before anything
   else, together with the slot it consumes (I6, I7);
2. it waits for its predecessors and for a free slot under
   ``max_concurrent_runs``;
3. its work starts and it is recorded ``running`` with its owner and pid;
4. exactly one terminal status is recorded (I2).

The in-memory handles kept here are only a way to reach a run's task; whether
a run is live is always read from the store (I1).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

from gatewayd import bounds
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.durations import format_time
from gatewayd.environ import run_environment
from gatewayd.errors import Conflict, NotFound, RunAlreadyEnded, SpawnFailed
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
from gatewayd.ids import new_run_id, new_session_id
from gatewayd.model import (
    MAIN_SESSION_KEY,
    AgentTurnPayload,
    ErrorKind,
    ExecPayload,
    Job,
    PayloadKind,
    Run,
    RunOutcome,
    RunStatus,
    StopReason,
    SystemEventPayload,
    Trigger,
    session_key_for,
)
from gatewayd.planning import (
    CatchupLimits,
    DuePlan,
    OverlapAction,
    SlotDecision,
    decide_overlap,
    needs_live_runs,
    plan_due,
    retry_delay,
)
from gatewayd.runners.base import ExecResult, Execution, Finished, RunContext, Runner
from gatewayd.settings import GATEWAY, SCHEDULER, TAIL_BYTES
from gatewayd.store.base import Publication, Store
from gatewayd.store.transitions import finished, nothing_to_cancel, started

log = structlog.get_logger("gatewayd.runs")

_STOP_ERRORS = {
    StopReason.CANCELLED: "cancelled on request",
    StopReason.REPLACED: "cancelled: replaced by a newer run of the job",
    StopReason.SHUTDOWN: "cancelled: the daemon shut down",
    StopReason.JOB_REMOVED: "cancelled: the job was removed",
}
TIMEOUT_ERROR = "job execution timed out"
# The lifecycle stop_reason of an ending that was not a stop.
_SESSION_STOP = {RunStatus.INTERRUPTED: StopReason.INTERRUPTED}
# How many of its latest endings an instance keeps at hand for those who wait on them.
RECENT_ENDINGS = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    instance_id: str
    state_dir: Path
    socket_path: Path
    max_concurrent_runs: int = GATEWAY.max_concurrent_runs
    default_timeout_s: float = GATEWAY.default_timeout_s
    kill_grace_s: float = GATEWAY.kill_grace_s
    tail_bytes: int = TAIL_BYTES
    catchup_window_s: float = SCHEDULER.catchup_window_s
    catchup: CatchupLimits = CatchupLimits()
    agent_timeouts: tuple[tuple[str, float], ...] = ()
    # What runs inherit (see gatewayd.environ); None: the daemon's own, less its service's.
    inherited_env: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The answer to a request for a run: the new run, or the live run that refused it."""

    run: Run
    ran: bool
    reason: str | None = None


def outcome_for(
    result: ExecResult, stop_reason: StopReason | None, *, ended_at: datetime
) -> RunOutcome:
    """The terminal status of a run whose work ended with ``result``.

    A stop (timeout, cancel) decides over whatever the stopped work exited with.
    Work that ended without leaving a status is ``interrupted``.
    """
    common = {
        "ended_at": result.ended_at or ended_at,
        "summary": result.summary,
        "output_tail": result.output_tail,
        "leftovers": result.leftovers,
    }
    if stop_reason == StopReason.TIMEOUT:
        return RunOutcome(
            status=RunStatus.TIMED_OUT,
            exit_code=result.exit_code,
            error=TIMEOUT_ERROR,
            error_kind=ErrorKind.TIMEOUT,
            stop_reason=StopReason.TIMEOUT,
            **common,  # type: ignore[arg-type]
        )
    if stop_reason is not None:
        return RunOutcome(
            status=RunStatus.CANCELLED,
            exit_code=result.exit_code,
            error=_STOP_ERRORS.get(stop_reason, f"cancelled: {stop_reason.value}"),
            error_kind=ErrorKind.CANCELLED,
            stop_reason=stop_reason,
            **common,  # type: ignore[arg-type]
        )
    if result.lost:
        return RunOutcome(
            status=RunStatus.INTERRUPTED,
            error=result.error,
            error_kind=ErrorKind.INTERRUPTED,
            stop_reason=StopReason.LOST,
            **common,  # type: ignore[arg-type]
        )
    if result.signal is not None:
        return RunOutcome(
            status=RunStatus.FAILED,
            exit_code=result.exit_code,
            error=result.error,
            error_kind=ErrorKind.SIGNAL,
            **common,  # type: ignore[arg-type]
        )
    if result.exit_code == 0:
        return RunOutcome(status=RunStatus.SUCCEEDED, exit_code=0, **common)  # type: ignore[arg-type]
    return RunOutcome(
        status=RunStatus.FAILED,
        exit_code=result.exit_code,
        error=result.error or f"exited with code {result.exit_code}",
        error_kind=ErrorKind.EXIT,
        **common,  # type: ignore[arg-type]
    )


class _JobLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0


class _Active:
    """This instance's handle on one of its runs: how to reach and stop its task."""

    __slots__ = (
        "_stop_event",
        "done",
        "job_id",
        "lifecycle_ended",
        "run_id",
        "session_id",
        "started",
        "stop_reason",
        "stopping",
    )

    def __init__(self, run: Run) -> None:
        self.run_id = run.run_id
        self.job_id = run.job_id
        self.started = run.status is RunStatus.RUNNING
        self.session_id: str | None = None
        self.lifecycle_ended = False
        self.stop_reason: StopReason | None = None
        self.stopping = False
        self._stop_event: anyio.Event | None = None  # made only for those who wait for it
        self.done = anyio.Event()

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def stop_requested(self) -> None:
        """Return once a stop has been requested."""
        if self.stopping:
            return
        if self._stop_event is None:
            self._stop_event = anyio.Event()
        await self._stop_event.wait()


FinishedListener = Callable[[Run, Job | None], Awaitable[None]]


class RunPipeline:
    """Records and executes runs; see the module docstring for the steps."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        runners: Mapping[PayloadKind, Runner],
        settings: PipelineSettings,
        task_group: anyio.abc.TaskGroup,
        bus: Bus,
    ) -> None:
        self._bus = bus
        self._store = store
        self._clock = clock
        self._runners = runners
        self._settings = settings
        self._tg = task_group
        self._slots = anyio.Semaphore(settings.max_concurrent_runs)
        self._locks: dict[str, _JobLock] = {}
        self._active: dict[str, _Active] = {}
        self._finished_listeners: list[FinishedListener] = []
        self._detaching = False
        self._main_session_id: str | None = None
        self._recent_endings: OrderedDict[str, Run] = OrderedDict()
        inherited = settings.inherited_env
        self._environ = run_environment(os.environ) if inherited is None else dict(inherited)

    @property
    def settings(self) -> PipelineSettings:
        return self._settings

    def add_finished_listener(self, listener: FinishedListener) -> None:
        """Call ``listener(run, job)`` after each run's terminal status is recorded."""
        self._finished_listeners.append(listener)

    @asynccontextmanager
    async def job_lock(self, job_id: str) -> AsyncIterator[None]:
        """Hold the lock that serialises every decision about one job's runs and slots.

        A job's lock exists only while someone holds it or waits for it.
        """
        entry = self._locks.get(job_id)
        if entry is None:
            entry = self._locks[job_id] = _JobLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[job_id]

    def forget_runs(self, run_ids: Sequence[str]) -> None:
        """Runs deleted from the store: they are no longer to be answered from memory."""
        for run_id in run_ids:
            self._recent_endings.pop(run_id, None)

    @property
    def active_count(self) -> int:
        return len(self._active)

    # --- making runs ----------------------------------------------------------------

    def _new_run(
        self,
        job: Job,
        *,
        trigger: Trigger,
        now: datetime,
        scheduled_for: datetime | None = None,
        attempt: int = 1,
    ) -> Run:
        run_id = new_run_id(now)
        return Run(
            run_id=run_id,
            job_id=job.id,
            job_name=job.name,
            trigger=trigger,
            status=RunStatus.QUEUED,
            scheduled_for=scheduled_for,
            queued_at=now,
            session_key=session_key_for(job, run_id),
            attempt=attempt,
            owner=self._settings.instance_id,
        )

    def _skipped(
        self, job: Job, decision: SlotDecision, *, now: datetime, kind: ErrorKind, error: str
    ) -> Run:
        run = self._new_run(
            job, trigger=decision.trigger, now=now, scheduled_for=decision.scheduled_for
        )
        return replace(run, status=RunStatus.SKIPPED, ended_at=now, error=error, error_kind=kind)

    async def submit_manual(self, job: Job) -> Submitted:
        """Queue a manual run of ``job`` now, as its overlap policy allows (I6)."""
        if not needs_live_runs(job.overlap):
            return await self._submit(job, [], decide_overlap(job.overlap, []))
        async with self.job_lock(job.id):
            live = await self._store.live_runs(job.id)
            action = decide_overlap(job.overlap, live)
            if action is OverlapAction.SKIP:
                running = [r for r in live if r.status is RunStatus.RUNNING]
                return Submitted(run=(running or live)[0], ran=False, reason="already-running")
            return await self._submit(job, live, action)

    async def _submit(self, job: Job, live: Sequence[Run], action: OverlapAction) -> Submitted:
        now = self._clock.now()
        run = self._new_run(job, trigger=Trigger.MANUAL, now=now)
        await self._record([run], now)
        self._launch(run, job, after=self._waits_for(action, live))
        self._replace(action, live)
        return Submitted(run=run, ran=True)

    async def fire_due(self, job_id: str) -> tuple[list[Run], Job | None]:
        """Record and start what the due slots of a job call for; return the runs and the job.

        The slots and the job's new ``next_slot`` are recorded in one transaction.
        Returns the job as it is afterwards (``None`` if it no longer exists).
        """
        async with self.job_lock(job_id):
            job = await self._store.get_job(job_id)
            if job is None or not job.enabled:
                return [], job
            now = self._clock.now()
            window = job.catchup_window_s
            plan = plan_due(
                job,
                now,
                window_s=self._settings.catchup_window_s if window is None else window,
                limits=self._settings.catchup,
            )
            if not plan.decisions:
                return [], job
            runs = await self._record_plan(job, plan, now)
            return runs, replace(job, next_slot=plan.next_slot)

    async def _live_runs(self, job: Job) -> list[Run]:
        """The job's live runs, as far as its overlap policy needs them."""
        if not needs_live_runs(job.overlap):
            return []
        return await self._store.live_runs(job.id)

    async def _record(
        self,
        runs: Sequence[Run],
        now: datetime,
        *,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
    ) -> None:
        """Record new runs with their ``queued`` (or, if skipped, ``finished``) events.

        The write is seen through even if the caller is cancelled (see the bus), and
        the caller launches the runs before a cancellation can land: a run
        recorded is always driven to its ending.
        """

        def write(publication: Publication) -> Awaitable[None]:
            return self._store.record_runs(
                runs, advance_job=advance_job, next_slot=next_slot, publication=publication
            )

        await self._bus.publish_with(
            write,
            *(
                (RunQueued if run.status is RunStatus.QUEUED else RunFinished).of(run, now)
                for run in runs
            ),
        )

    async def _record_plan(self, job: Job, plan: DuePlan, now: datetime) -> list[Run]:
        """Record the plan's runs; each ordinary slot meets the overlap policy.

        An ordinary slot's run is decided against what is ahead of it: the job's
        live runs, then the runs of this plan before it, as if each slot had
        fired on time (one that starts counts as running). Catch-up runs wait in
        line, one after another.
        """
        live = await self._live_runs(job)
        ahead = list(live)
        runs: list[Run] = []
        launches: list[tuple[Run, tuple[str, ...]]] = []
        replacing = False
        previous: Run | None = None
        for decision in plan.decisions:
            if decision.skip is not None:
                runs.append(
                    self._skipped(
                        job,
                        decision,
                        now=now,
                        kind=decision.skip,
                        error=decision.note or decision.skip.value,
                    )
                )
                continue
            if decision.trigger is Trigger.CATCHUP and previous is not None:
                after: tuple[str, ...] = (previous.run_id,)
            else:
                action = decide_overlap(job.overlap, ahead)
                if action is OverlapAction.SKIP:
                    runs.append(
                        self._skipped(
                            job,
                            decision,
                            now=now,
                            kind=ErrorKind.OVERLAP,
                            error=f"skipped: run {ahead[0].run_id} of the job is still live",
                        )
                    )
                    continue
                after = self._waits_for(action, ahead)
                replacing = replacing or action is OverlapAction.REPLACE
            run = self._new_run(
                job, trigger=decision.trigger, now=now, scheduled_for=decision.scheduled_for
            )
            runs.append(run)
            launches.append((run, after))
            ahead.append(run if after else replace(run, status=RunStatus.RUNNING))
            previous = run
        await self._record(runs, now, advance_job=job.id, next_slot=plan.next_slot)
        for run, after in launches:
            self._launch(run, job, after=after)
        if replacing:
            self._replace(OverlapAction.REPLACE, live)
        return runs

    @staticmethod
    def _waits_for(action: OverlapAction, live: Sequence[Run]) -> tuple[str, ...]:
        if action in (OverlapAction.QUEUE, OverlapAction.REPLACE):
            return tuple(r.run_id for r in live)
        return ()

    def _replace(self, action: OverlapAction, live: Sequence[Run]) -> None:
        if action is OverlapAction.REPLACE:
            for run in live:
                active = self._active.get(run.run_id)
                if active is not None:
                    active.request_stop(StopReason.REPLACED)

    def _launch(self, run: Run, job: Job, *, after: tuple[str, ...] = ()) -> None:
        active = _Active(run)
        self._active[run.run_id] = active
        self._tg.start_soon(self._execute, run, job, after, active, name=f"run {run.run_id}")

    def relaunch(self, run: Run, job: Job) -> None:
        """Execute a ``queued`` run this instance has taken over (a pending retry)."""
        self._launch(run, job)

    def adopt(self, run: Run, job: Job | None, execution: Execution) -> None:
        """Watch a ``running`` run started by an instance that is gone, to its ending."""
        active = _Active(run)
        self._active[run.run_id] = active
        self._tg.start_soon(self._watch, run, job, execution, active, name=f"run {run.run_id}")

    # --- stopping and waiting -------------------------------------------------------

    def request_stop(self, run_id: str, *, reason: StopReason = StopReason.CANCELLED) -> bool:
        """Ask a run this instance drives to stop, without waiting; whether it drives it."""
        active = self._active.get(run_id)
        if active is None:
            return False
        active.request_stop(reason)
        return True

    async def cancel(self, run_id: str, *, reason: StopReason = StopReason.CANCELLED) -> Run:
        """Stop a live run and return it once its terminal status is recorded."""
        active = self._active.get(run_id)
        if active is not None:
            active.request_stop(reason)
            await active.done.wait()
            run = self.recent_ending(run_id) or await self._store.get_run(run_id)
            assert run is not None
            return run
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        if run.status.is_terminal:
            raise nothing_to_cancel(run)
        if run.status is RunStatus.QUEUED:
            await self.finish_unwatched(run, self._stopped(reason))
            ended = await self._store.get_run(run_id)
            assert ended is not None
            return ended
        raise Conflict(
            f"run {run_id} is running under instance {run.owner}, not this one; "
            "it cannot be cancelled from here"
        )

    async def wait(self, run_id: str) -> Run:
        """The run once it has a terminal status, if this instance is running it; else as is."""
        active = self._active.get(run_id)
        if active is not None:
            await active.done.wait()
        ended = self.recent_ending(run_id)
        if ended is not None:
            return ended
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    def recent_ending(self, run_id: str) -> Run | None:
        """The run as its ending was recorded, if it is among this instance's latest endings.

        A terminal row never changes, so this is what the store would answer.
        """
        return self._recent_endings.get(run_id)

    def is_watching(self, run_id: str) -> bool:
        """Whether this instance has a task driving the run."""
        return run_id in self._active

    async def wait_idle(self) -> None:
        """Return once this instance has no run in progress."""
        while self._active:
            await next(iter(self._active.values())).done.wait()

    async def stop_all(self, reason: StopReason) -> None:
        """Stop every run of this instance and wait until each has its terminal status."""
        handles = list(self._active.values())
        for active in handles:
            active.request_stop(reason)
        for active in handles:
            await active.done.wait()

    async def detach_all(self) -> None:
        """Let running runs go on without this instance; cancel the ones not started.

        The next instance re-adopts the running ones and records their endings.
        Leaving the pipeline's context afterwards stops watching them.
        """
        self._detaching = True
        waiting = [a for a in self._active.values() if not a.started]
        for active in waiting:
            active.request_stop(StopReason.SHUTDOWN)
        for active in waiting:
            await active.done.wait()

    # --- executing ------------------------------------------------------------------

    async def _execute(self, run: Run, job: Job, after: tuple[str, ...], active: _Active) -> None:
        try:
            await self._drive(run, job, after, active)
        except anyio.get_cancelled_exc_class():
            if not (self._detaching and active.started):
                with anyio.CancelScope(shield=True):
                    await self._settle_quietly(run, job, self._stopped(StopReason.SHUTDOWN), active)
            raise
        except Exception as exc:
            log.exception("run failed inside gatewayd", run_id=run.run_id, job_id=job.id)
            with anyio.CancelScope(shield=True):
                await self._settle_quietly(run, job, self._internal_error(exc), active)
        finally:
            active.done.set()
            self._active.pop(run.run_id, None)

    async def _watch(
        self, run: Run, job: Job | None, execution: Execution, active: _Active
    ) -> None:
        try:
            outcome = await self._supervise(run, job, execution, active)
            await self._finish(run, job, outcome, active)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            log.exception("watching a run failed inside gatewayd", run_id=run.run_id)
            with anyio.CancelScope(shield=True):
                await self._settle_quietly(run, job, self._internal_error(exc), active)
        finally:
            active.done.set()
            self._active.pop(run.run_id, None)

    def _stopped(self, reason: StopReason) -> RunOutcome:
        return outcome_for(ExecResult(), reason, ended_at=self._clock.now())

    def _internal_error(self, exc: Exception) -> RunOutcome:
        return RunOutcome(
            status=RunStatus.FAILED,
            ended_at=self._clock.now(),
            error=f"internal error: {type(exc).__name__}: {exc}",
            error_kind=ErrorKind.INTERNAL,
        )

    async def _unless_stopped(self, active: _Active, wait: Callable[[], Awaitable[object]]) -> bool:
        """Await ``wait()``; ``False`` if a stop was requested before it returned."""
        if active.stopping:
            return False
        done = False
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await active.stop_requested()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await wait()
            done = True
            tg.cancel_scope.cancel()
        return done

    async def _wait_turn(self, run: Run, after: tuple[str, ...], active: _Active) -> bool:
        """Wait for the run's time (retries), its predecessors and a free slot.

        ``False`` if a stop was requested first; ``True`` holding a slot.
        """
        if run.trigger is Trigger.RETRY and run.scheduled_for is not None:
            not_before = run.scheduled_for
            if not await self._unless_stopped(active, lambda: self._clock.sleep_until(not_before)):
                return False
        for predecessor in after:
            handle = self._active.get(predecessor)
            if handle is not None and not await self._unless_stopped(active, handle.done.wait):
                return False
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            return await self._unless_stopped(active, self._slots.acquire)
        return True

    async def _drive(self, run: Run, job: Job, after: tuple[str, ...], active: _Active) -> None:
        if not await self._wait_turn(run, after, active):
            await self._finish_if_live(
                run, job, self._stopped(active.stop_reason or StopReason.CANCELLED)
            )
            return
        try:
            if active.stopping:
                await self._finish_if_live(
                    run, job, self._stopped(active.stop_reason or StopReason.CANCELLED)
                )
                return
            ctx = await self._context(run, job)
            started_at = self._clock.now()
            try:
                execution = await self._runners[job.payload.kind].start(ctx)
            except SpawnFailed as exc:
                failed = RunOutcome(
                    status=RunStatus.FAILED,
                    ended_at=self._clock.now(),
                    error=exc.message,
                    error_kind=ErrorKind.SPAWN,
                )
                await self._record_start(run, job, active, started_at=started_at, ended=failed)
                return
            if isinstance(execution, Finished):
                # The work was over before its start could be recorded: both in one write.
                await self._record_start(
                    run, job, active, started_at=started_at, ended=execution.result
                )
                return
            try:
                run = await self._record_start(
                    run,
                    job,
                    active,
                    started_at=started_at,
                    pid=execution.pid,
                    pid_start=execution.pid_start,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await execution.stop(0)
                raise
            log.info("run started", run_id=run.run_id, job=job.name, pid=execution.pid)
            outcome = await self._supervise(run, job, execution, active)
            await self._finish(run, job, outcome, active)
        finally:
            self._slots.release()

    def _deadline(self, run: Run, job: Job | None) -> datetime | None:
        """When the run times out: its job's timeout, else its agent's, else the default."""
        timeout = self._settings.default_timeout_s
        if job is not None and job.timeout_s is not None:
            timeout = job.timeout_s
        elif job is not None and isinstance(job.payload, AgentTurnPayload):
            timeout = dict(self._settings.agent_timeouts).get(job.payload.agent, timeout)
        if timeout <= 0:
            return None
        timeout = min(timeout, bounds.TIMEOUT.high)  # a job stored before ranges were checked
        return (run.started_at or self._clock.now()) + timedelta(seconds=timeout)

    async def _supervise(
        self, run: Run, job: Job | None, execution: Execution, active: _Active
    ) -> RunOutcome:
        """Wait for the run to end by itself, or stop it at its deadline or on request."""
        deadline_at = self._deadline(run, job)
        result: ExecResult | None = None
        stop_reason: StopReason | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def natural_end() -> None:
                    nonlocal result
                    result = await execution.wait()
                    tg.cancel_scope.cancel()

                async def deadline(when: datetime) -> None:
                    nonlocal stop_reason
                    await self._clock.sleep_until(when)
                    stop_reason = stop_reason or StopReason.TIMEOUT
                    tg.cancel_scope.cancel()

                async def stop_request() -> None:
                    nonlocal stop_reason
                    await active.stop_requested()
                    stop_reason = stop_reason or active.stop_reason or StopReason.CANCELLED
                    tg.cancel_scope.cancel()

                tg.start_soon(natural_end)
                tg.start_soon(stop_request)
                if deadline_at is not None:
                    tg.start_soon(deadline, deadline_at)
        except anyio.get_cancelled_exc_class():
            if not self._detaching:
                with anyio.CancelScope(shield=True):
                    await self._announce_then_stop(
                        run, self._stopped(StopReason.SHUTDOWN), active, execution
                    )
            raise
        if result is not None:
            return self._natural_outcome(run, result)
        with anyio.CancelScope(shield=True):
            outcome = self._stopped(stop_reason or StopReason.CANCELLED)
            await self._announce_then_stop(run, outcome, active, execution)
            ended = await execution.wait()
        return outcome_for(replace(ended, ended_at=None), stop_reason, ended_at=self._clock.now())

    async def _announce_then_stop(
        self, run: Run, outcome: RunOutcome, active: _Active, execution: Execution
    ) -> None:
        """I5: the session's ending is published, and its row terminal, before anyone
        sees the run stop, and before its process group is stopped.

        While the store takes no writes, the publication is queued first (so it is
        written before the run's ending, in order) but not waited for: the group is
        stopped meanwhile, so that a run that times out or is cancelled during an
        outage (a runaway filling the disk, say) stops now. Nobody can see the
        stop before the publication: the record shows neither until it is written.
        """
        grace = self._settings.kill_grace_s
        if self._store.health.writable:
            await self._announce_end(run, outcome, active)
            await execution.stop(grace)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._announce_end, run, outcome, active)
            await execution.stop(grace)

    def context_for(self, run: Run, job: Job, env: Mapping[str, str]) -> RunContext:
        """Where a run's files are, and what it is told."""
        return RunContext(run=run, job=job, env=env, state_dir=self._settings.state_dir)

    async def _context(self, run: Run, job: Job) -> RunContext:
        if isinstance(job.payload, SystemEventPayload):
            return self.context_for(run, job, {})  # no process: no environment to tell
        previous = await self._store.previous_started_run(job.id, run.run_id)
        env = dict(self._environ)
        if isinstance(job.payload, ExecPayload):
            env.update(job.payload.env)
        env.update(
            {
                "GATEWAYD_RUN_ID": run.run_id,
                "GATEWAYD_JOB_ID": job.id,
                "GATEWAYD_JOB_NAME": job.name,
                "GATEWAYD_SESSION_KEY": run.session_key,
                "GATEWAYD_TRIGGER": run.trigger.value,
                "GATEWAYD_SCHEDULED_FOR": format_time(run.scheduled_for) or "",
                "GATEWAYD_ATTEMPT": str(run.attempt),
                "GATEWAYD_PREV_RUN_ID": previous.run_id if previous else "",
                "GATEWAYD_PREV_RUN_STATUS": previous.status.value if previous else "",
                "GATEWAYD_SOCKET": str(self._settings.socket_path),
                "GATEWAYD_STATE_DIR": str(self._settings.state_dir),
            }
        )
        return self.context_for(run, job, env)

    def _natural_outcome(self, run: Run, result: ExecResult) -> RunOutcome:
        """The outcome of work that ended by itself."""
        if result.ended_at is not None and run.started_at is not None:
            # A file's time is coarser than the clock: never end before the start.
            result = replace(result, ended_at=max(result.ended_at, run.started_at))
        return outcome_for(result, None, ended_at=self._clock.now())

    async def record_ended(self, run: Run, job: Job | None, execution: Execution) -> None:
        """Record the ending of an unwatched run whose work has already ended."""
        await self._finish(run, job, self._natural_outcome(run, await execution.wait()))

    async def finish_unwatched(self, run: Run, outcome: RunOutcome) -> None:
        """Record the ending of a live run that no task drives (start-up settlement)."""
        await self._finish(run, await self._store.get_job(run.job_id), outcome)

    async def _settle_quietly(
        self, run: Run, job: Job | None, outcome: RunOutcome, active: _Active
    ) -> None:
        """Record a run's ending on a path of last resort; a failure is logged, never raised.

        A run task's failure never escapes into the daemon's task group: if even
        this ending cannot be recorded (the store failing reads too), the run stays
        live in the store, unwatched, and the sweeper settles it.
        """
        try:
            await self._finish_if_live(run, job, outcome, active)
        except Exception:
            log.exception("could not record a run's ending; the sweeper will", run_id=run.run_id)

    async def _finish_if_live(
        self, run: Run, job: Job | None, outcome: RunOutcome, active: _Active | None = None
    ) -> None:
        current = await self._store.get_run(run.run_id)
        if current is not None and current.status.is_live:
            await self._finish(current, job, outcome, active)

    async def _session_id(self, run: Run, active: _Active | None) -> str:
        if active is not None and active.session_id is not None:
            return active.session_id
        if run.session_key == MAIN_SESSION_KEY:
            return await self._main_session()
        session = await self._store.get_session(run.session_key)
        return session.session_id if session is not None else new_session_id()

    async def _main_session(self) -> str:
        """The id of the shared ``main`` session: read once, then kept (only we write it)."""
        if self._main_session_id is None:
            session = await self._store.get_session(MAIN_SESSION_KEY)
            if self._main_session_id is None:  # no other task read it meanwhile
                self._main_session_id = session.session_id if session else new_session_id()
        return self._main_session_id

    async def _record_start(
        self,
        run: Run,
        job: Job,
        active: _Active,
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
            session_id = await self._main_session()
        else:
            session_id = new_session_id()  # an isolated session is new with each run
        active.session_id = session_id
        owner = self._settings.instance_id

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
            outcome = self._natural_outcome(expected, outcome)
        if outcome is not None:
            events += await self._ending_events(expected, outcome, active)

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
        active.started = True
        if outcome is not None:
            await self._ended(run, job, active)
        return run

    async def _end_event(
        self, run: Run, outcome: RunOutcome, active: _Active | None
    ) -> LifecycleEvent | None:
        """The lifecycle ``end`` or ``error`` of a run that started; ``None`` if published."""
        if run.status is not RunStatus.RUNNING or (active is not None and active.lifecycle_ended):
            return None
        common: dict[str, Any] = {
            "ts": self._clock.now(),
            "run_id": run.run_id,
            "job_id": run.job_id,
            "session_key": run.session_key,
            "session_id": await self._session_id(run, active),
        }
        if outcome.status is RunStatus.SUCCEEDED:
            return SessionEnded(stop_reason=StopReason.COMPLETED, **common)
        return SessionFailed(
            error=outcome.error,
            error_kind=outcome.error_kind,
            stop_reason=outcome.stop_reason or _SESSION_STOP.get(outcome.status, StopReason.ERROR),
            **common,
        )

    async def _announce_end(self, run: Run, outcome: RunOutcome, active: _Active | None) -> None:
        """Publish the lifecycle ending of a run that started, once, ahead of its own ending."""
        event = await self._end_event(run, outcome, active)
        if event is not None:
            await self._bus.publish(event)
            if active is not None:
                active.lifecycle_ended = True

    async def _finish(
        self, run: Run, job: Job | None, outcome: RunOutcome, active: _Active | None = None
    ) -> None:
        """Record the run's terminal status, with its lifecycle ending if not yet published."""
        try:
            events = await self._ending_events(run, outcome, active)
            run = await self._bus.publish_with(
                lambda publication: self._store.finish_run(
                    run.run_id, outcome, publication=publication
                ),
                *events,
            )
        except RunAlreadyEnded:
            log.warning("run already had its ending", run_id=run.run_id)
            return
        await self._ended(run, job, active)

    async def _ending_events(
        self, run: Run, outcome: RunOutcome, active: _Active | None
    ) -> list[Event]:
        """The lifecycle ending (unless published already), then ``finished``."""
        lifecycle = await self._end_event(run, outcome, active)
        events: list[Event] = [] if lifecycle is None else [lifecycle]
        events.append(RunFinished.of(finished(run, outcome), self._clock.now()))
        return events

    async def _ended(self, run: Run, job: Job | None, active: _Active | None) -> None:
        """What follows the recording of a run's ending: retries and listeners."""
        self._recent_endings[run.run_id] = run
        if len(self._recent_endings) > RECENT_ENDINGS:
            self._recent_endings.popitem(last=False)
        if active is not None:
            active.lifecycle_ended = True
        log.info(
            "run finished",
            run_id=run.run_id,
            job=run.job_name,
            status=run.status.value,
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
        )
        if job is not None:
            await self._maybe_retry(run, job)
        for listener in self._finished_listeners:
            try:
                await listener(run, job)
            except Exception:
                log.exception("a run-finished listener failed", run_id=run.run_id)

    async def _maybe_retry(self, run: Run, job: Job) -> None:
        """Queue the next attempt of a failed or timed-out run, after its backoff."""
        if run.status not in (RunStatus.FAILED, RunStatus.TIMED_OUT) or self._detaching:
            return
        delay = retry_delay(job.retry, run.attempt)
        if delay is None:
            return
        now = self._clock.now()
        retry = self._new_run(
            job,
            trigger=Trigger.RETRY,
            now=now,
            scheduled_for=now + timedelta(seconds=delay),
            attempt=run.attempt + 1,
        )
        await self._record([retry], now)
        log.info("retry queued", run_id=retry.run_id, after=run.run_id, attempt=retry.attempt)
        self._launch(retry, job)


@asynccontextmanager
async def open_pipeline(
    *,
    store: Store,
    clock: Clock,
    runners: Mapping[PayloadKind, Runner],
    settings: PipelineSettings,
    bus: Bus,
) -> AsyncIterator[RunPipeline]:
    """A pipeline whose run tasks live inside this context.

    Leaving the context cancels runs still in progress; each is stopped and
    recorded ``cancelled`` with ``stop_reason`` ``shutdown`` before it returns.
    """
    async with anyio.create_task_group() as tg:
        pipeline = RunPipeline(
            store=store, clock=clock, runners=runners, settings=settings, task_group=tg, bus=bus
        )
        try:
            yield pipeline
        finally:
            tg.cancel_scope.cancel()
