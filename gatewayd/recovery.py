"""Settling runs that no live instance watches, at start-up and by the sweeper (I1, I2, I4).

At start, before the socket serves, every live run of a dead instance is settled:
a running run whose process is still there (same pid, same start time) is
re-adopted and watched to its real ending; one whose process has ended gets the
exit status its waiter wrote, or ``interrupted`` if there is none; a queued
run is ``interrupted``, except a pending retry, which this instance takes over.

The sweeper repeats this periodically for anything that escaped (it never
touches a run that this live instance watches), keeps the instance's heartbeat,
and prunes history by retention (never a live run).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import structlog

from gatewayd import runfiles
from gatewayd.clock import Clock
from gatewayd.errors import Conflict, RunAlreadyEnded
from gatewayd.model import (
    MAIN_SESSION_KEY,
    AgentTurnPayload,
    ErrorKind,
    LeftoverPolicy,
    Run,
    RunOutcome,
    RunStatus,
    StopReason,
    Trigger,
)
from gatewayd.runners.agent_turn import AgentTurnRunner
from gatewayd.runners.base import Execution
from gatewayd.runners.exec import ExecRunner
from gatewayd.runners.processes import is_running
from gatewayd.runs import RunPipeline
from gatewayd.sessions import session_dir
from gatewayd.settings import GATEWAY
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.recovery")


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How much run history to keep: the newest runs per job, and a maximum age."""

    keep_per_job: int = GATEWAY.history_per_job
    max_age_s: float = GATEWAY.history_max_age_s
    events_keep: int = GATEWAY.events_keep


@dataclass(slots=True)
class Settlement:
    """What one settlement pass did, by run id."""

    adopted: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    # Recorded ended at once: interrupted, or with the status their waiter wrote.
    interrupted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.adopted or self.requeued or self.interrupted)


def delete_history(state_dir: Path, runs: list[Run]) -> None:
    """Delete the files of pruned runs: logs, exit statuses, isolated session folders."""
    runfiles.delete_run_files(state_dir, runs)
    for run in runs:
        if run.session_key != MAIN_SESSION_KEY:
            shutil.rmtree(session_dir(state_dir, run.session_key), ignore_errors=True)


class Recovery:
    """Settles unwatched live runs; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        exec_runner: ExecRunner,
        agent_runner: AgentTurnRunner | None = None,
        instance_id: str,
        state_dir: Path,
    ) -> None:
        self._store = store
        self._clock = clock
        self._pipeline = pipeline
        self._exec = exec_runner
        self._agents = agent_runner
        self._instance_id = instance_id
        self._state_dir = state_dir

    def _needs_settling(self, run: Run) -> bool:
        # The state directory's lock makes this the only live instance: a run owned
        # by any other is an orphan. One of ours needs settling only if unwatched.
        return run.owner != self._instance_id or not self._pipeline.is_watching(run.run_id)

    async def settle(self) -> Settlement:
        """Settle every live run that this instance does not watch."""
        done = Settlement()
        for run in await self._store.live_runs():
            if not self._needs_settling(run):
                continue
            try:
                await self._settle(run, done)
            except (RunAlreadyEnded, Conflict):
                continue  # it ended, or was taken over, meanwhile: nothing left to settle
        if done:
            log.info(
                "settled runs left without a watcher",
                adopted=done.adopted,
                requeued=done.requeued,
                interrupted=done.interrupted,
            )
        return done

    async def _settle(self, run: Run, done: Settlement) -> None:
        job = await self._store.get_job(run.job_id)
        previous_owner = run.owner
        if run.status is RunStatus.QUEUED:
            if run.trigger is Trigger.RETRY and job is not None:
                run = await self._store.adopt_run(
                    run.run_id, from_owner=previous_owner, to_owner=self._instance_id
                )
                self._pipeline.relaunch(run, job)
                done.requeued.append(run.run_id)
                return
            await self._interrupt(
                run, f"it was queued when gatewayd instance {previous_owner} stopped"
            )
            done.interrupted.append(run.run_id)
            return
        pid = run.pid
        if pid is None:
            await self._interrupt(
                run, f"gatewayd instance {previous_owner} stopped while it was running"
            )
            done.interrupted.append(run.run_id)
            return
        run = await self._store.adopt_run(
            run.run_id, from_owner=previous_owner, to_owner=self._instance_id
        )
        execution: Execution = self._exec.adopt(
            pid=pid,
            pid_start=run.pid_start,
            log_path=runfiles.log_path(self._state_dir, run.job_id, run.run_id),
            exit_path=runfiles.exit_path(self._state_dir, run.job_id, run.run_id),
            leftovers=LeftoverPolicy.KILL if job is None else job.leftovers,
        )
        if (
            self._agents is not None
            and job is not None
            and isinstance(job.payload, AgentTurnPayload)
        ):
            execution = self._agents.wrap(execution, run, self._state_dir)
        if not await anyio.to_thread.run_sync(is_running, pid, run.pid_start):
            # Gone already: its ending is recorded now, before the socket serves.
            await self._pipeline.record_ended(run, job, execution)
            done.interrupted.append(run.run_id)
            return
        self._pipeline.adopt(run, job, execution)
        done.adopted.append(run.run_id)
        log.info("run re-adopted", run_id=run.run_id, pid=run.pid, from_instance=previous_owner)

    async def _interrupt(self, run: Run, why: str) -> None:
        await self._pipeline.finish_unwatched(
            run,
            RunOutcome(
                status=RunStatus.INTERRUPTED,
                ended_at=self._clock.now(),
                error=f"interrupted: {why}",
                error_kind=ErrorKind.INTERRUPTED,
                stop_reason=StopReason.OWNER_GONE,
            ),
        )

    async def prune(self, retention: Retention) -> int:
        """Delete history beyond retention, with the runs' files; how many runs went."""
        cutoff = self._clock.now() - timedelta(seconds=retention.max_age_s)
        pruned = await self._store.prune_runs(
            keep_per_job=retention.keep_per_job, queued_before=cutoff
        )
        if pruned:
            self._pipeline.forget_runs([run.run_id for run in pruned])
            await anyio.to_thread.run_sync(delete_history, self._state_dir, pruned)
            log.info("pruned run history", runs=len(pruned))
        events = await self._store.prune_events(keep=retention.events_keep)
        if events:
            log.info("pruned events", events=events)
        return len(pruned)

    async def sweep(
        self,
        *,
        interval_s: float,
        retention: Retention,
        after: Callable[[], Awaitable[None]] | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every ``interval_s``: look at the store's files; heartbeat, settle what nobody
        watches and prune history, unless the store takes no writes now.

        ``after()`` is awaited after each sweep (the daemon reports its status).
        """
        task_status.started()
        while True:
            await self._clock.sleep(interval_s)
            try:
                await self._store.check_files()
                if self._store.health.writable:
                    await self._store.heartbeat(self._instance_id, self._clock.now())
                    await self.settle()
                    await self.prune(retention)
                if after is not None:
                    await after()
            except Exception:
                log.exception("a sweep failed; the next one will try again")
