"""Supervising runs' tasks: each waits its turn, starts its work, and is driven to its ending.

A run's task waits for its time (a retry's backoff), its predecessors (overlap
``queue`` and ``replace``) and a free slot under ``max_concurrent_runs``; then
its work starts and is recorded ``running``; then the first of these ends it:
the work ending by itself, its deadline, or a stop requested (cancel, replace,
shutdown). A stop is announced before the work is stopped (I5), and the run's
one ending is recorded (I2) whatever happens, even if the task is cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import anyio.abc
import structlog

from gatewayd import bounds
from gatewayd.clock import Clock
from gatewayd.errors import SpawnFailed
from gatewayd.model import (
    AgentTurnPayload,
    ErrorKind,
    Job,
    PayloadKind,
    Run,
    RunOutcome,
    RunStatus,
    StopReason,
    Trigger,
)
from gatewayd.racing import first_of
from gatewayd.runners.base import ExecResult, Execution, Finished, Runner
from gatewayd.runs.environment import RunEnvironment
from gatewayd.runs.handles import Handles, RunHandle
from gatewayd.runs.outcomes import ended_by_itself, internal_error, stopped, stopped_after
from gatewayd.runs.recording import Recorder
from gatewayd.settings import GATEWAY
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.runs")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How long runs may take, and how many run at once."""

    max_concurrent_runs: int = GATEWAY.max_concurrent_runs
    default_timeout_s: float = GATEWAY.default_timeout_s
    kill_grace_s: float = GATEWAY.kill_grace_s
    agent_timeouts: tuple[tuple[str, float], ...] = ()

    def deadline(self, run: Run, job: Job | None, *, now: datetime) -> datetime | None:
        """When the run times out: its job's timeout, else its agent's, else the default."""
        timeout = self.default_timeout_s
        if job is not None and job.timeout_s is not None:
            timeout = job.timeout_s
        elif job is not None and isinstance(job.payload, AgentTurnPayload):
            timeout = dict(self.agent_timeouts).get(job.payload.agent, timeout)
        if timeout <= 0:
            return None
        timeout = min(timeout, bounds.TIMEOUT.high)  # a job stored before ranges were checked
        return (run.started_at or now) + timedelta(seconds=timeout)


class Supervisor:
    """Runs each run's task in ``task_group``; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        runners: Mapping[PayloadKind, Runner],
        recorder: Recorder,
        environment: RunEnvironment,
        limits: Limits,
        handles: Handles,
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self._store = store
        self._clock = clock
        self._runners = runners
        self._recorder = recorder
        self._environment = environment
        self._limits = limits
        self._handles = handles
        self._tg = task_group
        self._slots = anyio.Semaphore(limits.max_concurrent_runs)
        # Set when the daemon leaves its running runs to the next instance.
        self.detaching = False

    def launch(self, run: Run, job: Job, *, after: tuple[str, ...] = ()) -> None:
        """Drive a recorded ``queued`` run to its ending, after the runs ``after``."""
        handle = self._handles.add(run)
        self._tg.start_soon(self._execute, run, job, after, handle, name=f"run {run.run_id}")

    def watch(self, run: Run, job: Job | None, execution: Execution) -> None:
        """Drive a ``running`` run whose work is already going (re-adopted) to its ending."""
        handle = self._handles.add(run)
        self._tg.start_soon(self._watch, run, job, execution, handle, name=f"run {run.run_id}")

    async def _execute(self, run: Run, job: Job, after: tuple[str, ...], handle: RunHandle) -> None:
        try:
            if await self._wait_turn(run, after, handle):
                try:
                    await self._drive(run, job, handle)
                finally:
                    self._slots.release()
            else:
                await self._recorder.finish_if_live(run, job, self._stopped(handle), handle)
        except anyio.get_cancelled_exc_class():
            if not (self.detaching and handle.started):
                with anyio.CancelScope(shield=True):
                    outcome = stopped(StopReason.SHUTDOWN, at=self._clock.now())
                    await self._recorder.settle_quietly(run, job, outcome, handle)
            raise
        except Exception as exc:
            log.exception("run failed inside gatewayd", run_id=run.run_id, job_id=job.id)
            with anyio.CancelScope(shield=True):
                outcome = internal_error(exc, at=self._clock.now())
                await self._recorder.settle_quietly(run, job, outcome, handle)
        finally:
            self._handles.done(handle)

    async def _watch(
        self, run: Run, job: Job | None, execution: Execution, handle: RunHandle
    ) -> None:
        try:
            outcome = await self._supervise(run, job, execution, handle)
            await self._recorder.finish(run, job, outcome, handle)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            log.exception("watching a run failed inside gatewayd", run_id=run.run_id)
            with anyio.CancelScope(shield=True):
                outcome = internal_error(exc, at=self._clock.now())
                await self._recorder.settle_quietly(run, job, outcome, handle)
        finally:
            self._handles.done(handle)

    def _stopped(self, handle: RunHandle) -> RunOutcome:
        return stopped(handle.stop_reason or StopReason.CANCELLED, at=self._clock.now())

    async def _unless_stopped(
        self, handle: RunHandle, wait: Callable[[], Awaitable[object]]
    ) -> bool:
        """Await ``wait()``; ``False`` if a stop was requested before it returned."""
        if handle.stopping:
            return False
        first, _ = await first_of(wait, handle.stop_requested)
        return first == 0

    async def _wait_turn(self, run: Run, after: tuple[str, ...], handle: RunHandle) -> bool:
        """Wait for the run's time (retries), its predecessors and a free slot.

        ``False`` if a stop was requested first; ``True`` holding a slot.
        """
        if run.trigger is Trigger.RETRY and run.scheduled_for is not None:
            not_before = run.scheduled_for
            if not await self._unless_stopped(handle, lambda: self._clock.sleep_until(not_before)):
                return False
        for predecessor in after:
            ahead = self._handles.get(predecessor)
            if ahead is not None and not await self._unless_stopped(handle, ahead.done.wait):
                return False
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            return await self._unless_stopped(handle, self._slots.acquire)
        return True

    async def _drive(self, run: Run, job: Job, handle: RunHandle) -> None:
        """Start the run's work (holding a slot), record it ``running``, supervise it."""
        if handle.stopping:
            await self._recorder.finish_if_live(run, job, self._stopped(handle), handle)
            return
        ctx = await self._environment.context(run, job)
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
            await self._recorder.record_start(run, job, handle, started_at=started_at, ended=failed)
            return
        if isinstance(execution, Finished):
            # The work was over before its start could be recorded: both in one write.
            await self._recorder.record_start(
                run, job, handle, started_at=started_at, ended=execution.result
            )
            return
        try:
            run = await self._recorder.record_start(
                run,
                job,
                handle,
                started_at=started_at,
                pid=execution.pid,
                pid_start=execution.pid_start,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await execution.stop(0)
            raise
        log.info("run started", run_id=run.run_id, job=job.name, pid=execution.pid)
        outcome = await self._supervise(run, job, execution, handle)
        await self._recorder.finish(run, job, outcome, handle)

    async def _supervise(
        self, run: Run, job: Job | None, execution: Execution, handle: RunHandle
    ) -> RunOutcome:
        """Wait for the run to end by itself, or stop it at its deadline or on request."""
        waits: list[Callable[[], Awaitable[object]]] = [execution.wait, handle.stop_requested]
        deadline_at = self._limits.deadline(run, job, now=self._clock.now())
        if deadline_at is not None:
            waits.append(lambda: self._clock.sleep_until(deadline_at))
        try:
            first, value = await first_of(*waits)
        except anyio.get_cancelled_exc_class():
            if not self.detaching:
                with anyio.CancelScope(shield=True):
                    outcome = stopped(StopReason.SHUTDOWN, at=self._clock.now())
                    await self._announce_then_stop(run, outcome, handle, execution)
            raise
        if first == 0:
            assert isinstance(value, ExecResult)
            return ended_by_itself(run, value, at=self._clock.now())
        reason: StopReason = value if first == 1 else StopReason.TIMEOUT
        handle.request_stop(reason)  # a deadline is a stop too: later requests change nothing
        with anyio.CancelScope(shield=True):
            await self._announce_then_stop(
                run, stopped(reason, at=self._clock.now()), handle, execution
            )
            ended = await execution.wait()
        return stopped_after(ended, reason, at=self._clock.now())

    async def _announce_then_stop(
        self, run: Run, outcome: RunOutcome, handle: RunHandle, execution: Execution
    ) -> None:
        """I5: the session's ending is published, and its row terminal, before anyone
        sees the run stop, and before its process group is stopped.

        While the store takes no writes, the publication is queued first (so it is
        written before the run's ending, in order) but not waited for: the group is
        stopped meanwhile, so that a run that times out or is cancelled during an
        outage (a runaway filling the disk, say) stops now. Nobody can see the
        stop before the publication: the record shows neither until it is written.
        """
        grace = self._limits.kill_grace_s
        if self._store.health.writable:
            await self._recorder.announce_end(run, outcome, handle)
            await execution.stop(grace)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._recorder.announce_end, run, outcome, handle)
            await execution.stop(grace)
