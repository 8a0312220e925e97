"""The one run pipeline (I3): the façade over admission, supervision, recording and retries.

Scheduled, catch-up and manual runs all enter here. For each run:

1. its id is minted and stored as ``queued`` (or ``skipped``) before anything
   else, together with the slot it consumes (I6, I7): :mod:`.admission`;
2. it waits for its predecessors and for a free slot under
   ``max_concurrent_runs``, then its work starts and it is recorded ``running``
   with its owner and pid: :mod:`.supervision`;
3. exactly one terminal status is recorded (I2), with its events:
   :mod:`.recording`, :mod:`.outcomes`; a failure may queue a retry: :mod:`.retries`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import structlog

from gatewayd.broker import Broker, Hint
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import NotFound
from gatewayd.model import Job, PayloadKind, Run, RunOutcome, RunStatus, StopReason
from gatewayd.planning import CatchupLimits
from gatewayd.runners.base import Execution, Runner
from gatewayd.runs.admission import Admission, Catchup, JobLocks, Submitted
from gatewayd.runs.endings import ending_of
from gatewayd.runs.environment import RunEnvironment
from gatewayd.runs.handles import Handles
from gatewayd.runs.outcomes import ended_by_itself, stopped
from gatewayd.runs.recording import Recorder
from gatewayd.runs.retries import Retries
from gatewayd.runs.supervision import Limits, Supervisor
from gatewayd.settings import CLUSTER, GATEWAY, SCHEDULER
from gatewayd.store.base import Store
from gatewayd.store.transitions import nothing_to_cancel

log = structlog.get_logger("gatewayd.runs")

# How many of its latest endings an instance keeps at hand for those who wait on them.
RECENT_ENDINGS = 1024

FinishedListener = Callable[[Run, Job | None], Awaitable[None]]
SkippedListener = Callable[[Run, Job], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    instance_id: str
    state_dir: Path
    socket_path: Path
    max_concurrent_runs: int = GATEWAY.max_concurrent_runs
    default_timeout_s: float = GATEWAY.default_timeout_s
    kill_grace_s: float = GATEWAY.kill_grace_s
    catchup_window_s: float = SCHEDULER.catchup_window_s
    catchup: CatchupLimits = CatchupLimits()
    agent_timeouts: tuple[tuple[str, float], ...] = ()
    # What runs inherit (see gatewayd.environ); None: the daemon's own, less its service's.
    inherited_env: Mapping[str, str] | None = None

    @property
    def limits(self) -> Limits:
        return Limits(
            max_concurrent_runs=self.max_concurrent_runs,
            default_timeout_s=self.default_timeout_s,
            kill_grace_s=self.kill_grace_s,
            agent_timeouts=self.agent_timeouts,
        )


class RunPipeline:
    """Records and executes runs; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        runners: Mapping[PayloadKind, Runner],
        settings: PipelineSettings,
        task_group: anyio.abc.TaskGroup,
        bus: Bus,
        broker: Broker,
        backstop_s: float = CLUSTER.backstop_s,
    ) -> None:
        self._store = store
        self._bus = bus
        self._broker = broker
        self._backstop_s = backstop_s
        self._settings = settings
        self._handles = handles = Handles()
        self._locks = JobLocks()
        self._finished_listeners: list[FinishedListener] = []
        self._skipped_listeners: list[SkippedListener] = []
        self._recent_endings: OrderedDict[str, Run] = OrderedDict()
        self._recorder = Recorder(
            store=store,
            bus=bus,
            clock=clock,
            instance_id=settings.instance_id,
            on_ended=self._ended,
        )
        self._supervisor = Supervisor(
            store=store,
            clock=clock,
            runners=runners,
            recorder=self._recorder,
            environment=RunEnvironment(
                store=store,
                state_dir=settings.state_dir,
                socket_path=settings.socket_path,
                inherited=settings.inherited_env,
            ),
            limits=settings.limits,
            handles=handles,
            task_group=task_group,
        )
        self._admission = Admission(
            store=store,
            clock=clock,
            recorder=self._recorder,
            supervisor=self._supervisor,
            handles=handles,
            locks=self._locks,
            instance_id=settings.instance_id,
            catchup=Catchup(window_s=settings.catchup_window_s, limits=settings.catchup),
            on_skipped=self._tell_skipped,
        )
        self._retries = Retries(admission=self._admission, clock=clock)
        self._clock = clock

    @property
    def settings(self) -> PipelineSettings:
        return self._settings

    @property
    def active_count(self) -> int:
        return len(self._handles)

    def add_finished_listener(self, listener: FinishedListener) -> None:
        """Call ``listener(run, job)`` after each run's terminal status is recorded."""
        self._finished_listeners.append(listener)

    def add_skipped_listener(self, listener: SkippedListener) -> None:
        """Call ``listener(run, job)`` for each slot recorded ``skipped`` (overlap or missed),
        on the timer's path: it must not wait for anything."""
        self._skipped_listeners.append(listener)

    def _tell_skipped(self, run: Run, job: Job) -> None:
        for listener in self._skipped_listeners:
            try:
                listener(run, job)
            except Exception:
                log.exception("a skipped-slot listener failed", run_id=run.run_id)

    def job_lock(self, job_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the lock that serialises this instance's decisions about one job."""
        return self._locks.hold(job_id)

    # --- new runs ---------------------------------------------------------------------

    async def submit_manual(self, job: Job) -> Submitted:
        """Queue a manual run of ``job`` now, as its overlap policy allows (I6)."""
        return await self._admission.manual(job)

    async def fire_due(self, job_id: str) -> tuple[list[Run], Job | None]:
        """Record and start what the due slots of a job call for (see :class:`Admission`)."""
        return await self._admission.fire_due(job_id)

    def relaunch(self, run: Run, job: Job) -> None:
        """Execute a ``queued`` run this instance has taken over (a pending retry)."""
        self._supervisor.launch(run, job)

    def adopt(self, run: Run, job: Job | None, execution: Execution) -> None:
        """Watch a ``running`` run started by an instance that is gone, to its ending."""
        self._supervisor.watch(run, job, execution)

    async def record_ended(self, run: Run, job: Job | None, execution: Execution) -> None:
        """Record the ending of an unwatched run whose work has already ended."""
        result = await execution.wait()
        await self._recorder.finish(run, job, ended_by_itself(run, result, at=self._clock.now()))

    async def finish_unwatched(self, run: Run, outcome: RunOutcome) -> None:
        """Record the ending of a live run that no task drives (start-up settlement)."""
        await self._recorder.finish(run, await self._store.get_job(run.job_id), outcome)

    # --- stopping and waiting ---------------------------------------------------------

    def request_stop(self, run_id: str, *, reason: StopReason = StopReason.CANCELLED) -> bool:
        """Ask a run this instance drives to stop, without waiting; whether it drives it."""
        handle = self._handles.get(run_id)
        if handle is None:
            return False
        handle.request_stop(reason)
        return True

    async def cancel(self, run_id: str, *, reason: StopReason = StopReason.CANCELLED) -> Run:
        """Stop a live run, whichever instance drives it; return it once it has ended.

        A run this instance drives is stopped here. Another's is stopped by its
        owner, asked through the store (the request is durable: an owner that is
        gone leaves it to the instance that takes its runs over); the run is
        returned as it is if its ending takes longer than :attr:`cancel_wait_s`.
        A queued run that no live instance drives is recorded cancelled here.
        """
        handle = self._handles.get(run_id)
        if handle is not None:
            handle.request_stop(reason)
            await handle.done.wait()
            run = self.recent_ending(run_id) or await self._store.get_run(run_id)
            assert run is not None
            return run
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        if run.status.is_terminal:
            raise nothing_to_cancel(run)
        if run.status is RunStatus.QUEUED and not await self._owner_lives(run):
            me = self._settings.instance_id
            if run.owner != me:  # claimed first, so that one settler wins
                run = await self._store.adopt_run(run_id, from_owner=run.owner, to_owner=me)
            await self.finish_unwatched(run, stopped(reason, at=self._clock.now()))
            ended = await self._store.get_run(run_id)
            assert ended is not None
            return ended
        await self._store.request_cancel(run_id, reason)
        self._broker.hint(Hint.CANCEL_REQUESTED)
        with anyio.move_on_after(self.cancel_wait_s):
            return await ending_of(run_id, store=self._store, bus=self._bus)
        current = await self._store.get_run(run_id)
        assert current is not None
        return current

    @property
    def cancel_wait_s(self) -> float:
        """How long a cancel waits for another instance to record the run's ending."""
        return self._settings.kill_grace_s + 3 * self._backstop_s

    async def _owner_lives(self, run: Run) -> bool:
        if run.owner is None or run.owner == self._settings.instance_id:
            return False  # ours, and no task of ours drives it
        owner = await self._store.get_instance(run.owner)
        return owner is not None and owner.lives_at(await self._store.now())

    async def carry_out_cancels(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Stop the runs of this instance that another asked to stop; until cancelled.

        It looks when a hint says a stop was asked, and every backstop.
        """
        with self._broker.listen(Hint.CANCEL_REQUESTED) as watch:
            task_status.started()
            while True:
                try:
                    asked = await self._store.cancel_requests(self._settings.instance_id)
                except Exception:
                    log.exception("could not read the stops asked of this instance's runs")
                    asked = []
                for run in asked:
                    assert run.cancel_requested is not None
                    self.request_stop(run.run_id, reason=run.cancel_requested)
                await watch.wait(backstop_s=self._backstop_s)

    async def wait(self, run_id: str) -> Run:
        """The run once it has a terminal status, whichever instance drives it."""
        handle = self._handles.get(run_id)
        if handle is not None:
            await handle.done.wait()
        ended = self.recent_ending(run_id)
        if ended is not None:
            return ended
        return await ending_of(run_id, store=self._store, bus=self._bus)

    def recent_ending(self, run_id: str) -> Run | None:
        """The run as its ending was recorded, if it is among this instance's latest endings.

        A terminal row never changes, so this is what the store would answer.
        """
        return self._recent_endings.get(run_id)

    def forget_runs(self, run_ids: Sequence[str]) -> None:
        """Runs deleted from the store: they are no longer to be answered from memory."""
        for run_id in run_ids:
            self._recent_endings.pop(run_id, None)

    def is_watching(self, run_id: str) -> bool:
        """Whether this instance has a task driving the run."""
        return run_id in self._handles

    async def wait_idle(self) -> None:
        """Return once this instance has no run in progress."""
        while len(self._handles):
            await next(iter(self._handles)).done.wait()

    async def stop_all(self, reason: StopReason) -> None:
        """Stop every run of this instance and wait until each has its terminal status."""
        handles = list(self._handles)
        for handle in handles:
            handle.request_stop(reason)
        for handle in handles:
            await handle.done.wait()

    async def detach_all(self) -> None:
        """Let running runs go on without this instance; cancel the ones not started.

        The next instance re-adopts the running ones and records their endings.
        Leaving the pipeline's context afterwards stops watching them.
        """
        self._supervisor.detaching = True
        waiting = [h for h in self._handles if not h.started]
        for handle in waiting:
            handle.request_stop(StopReason.SHUTDOWN)
        for handle in waiting:
            await handle.done.wait()

    async def _ended(self, run: Run, job: Job | None) -> None:
        """What follows the recording of a run's ending: retries and listeners."""
        self._recent_endings[run.run_id] = run
        if len(self._recent_endings) > RECENT_ENDINGS:
            self._recent_endings.popitem(last=False)
        if job is not None and not self._supervisor.detaching:
            await self._retries.after(run, job)
        for listener in self._finished_listeners:
            try:
                await listener(run, job)
            except Exception:
                log.exception("a run-finished listener failed", run_id=run.run_id)


@asynccontextmanager
async def open_pipeline(
    *,
    store: Store,
    clock: Clock,
    runners: Mapping[PayloadKind, Runner],
    settings: PipelineSettings,
    bus: Bus,
    broker: Broker,
    backstop_s: float = CLUSTER.backstop_s,
) -> AsyncIterator[RunPipeline]:
    """A pipeline whose run tasks live inside this context.

    Leaving the context cancels runs still in progress; each is stopped and
    recorded ``cancelled`` with ``stop_reason`` ``shutdown`` before it returns.
    """
    async with anyio.create_task_group() as tg:
        pipeline = RunPipeline(
            store=store,
            clock=clock,
            runners=runners,
            settings=settings,
            task_group=tg,
            bus=bus,
            broker=broker,
            backstop_s=backstop_s,
        )
        try:
            yield pipeline
        finally:
            tg.cancel_scope.cancel()
