"""Settling runs that no live instance drives (I1, I2, I4), by the store's leases.

An instance owns the runs it starts while its lease lasts (:mod:`gatewayd.leases`).
Settlement first takes over the instances that are dead: one whose lease has
lapsed on the store's clock, or one this instance proves dead by holding the
state directory's lock it held (its predecessor in that directory). Exactly
one taker wins each. Then every live run whose owner is not live is settled,
by its host, each by the one instance whose claim on it wins (it becomes the
run's owner first, so that two settlers never act on one run):

* on this host (``host_id``), a running run whose process is still there (same
  pid, same start time) is re-adopted and watched to its real ending; one whose
  process has ended gets the exit status its waiter wrote (in its owner's state
  directory), or ``interrupted`` if there is none; a queued run is
  ``interrupted``, except a pending retry, which this instance takes over;
* on another host, it waits for an instance of its host, and only once its
  owner's lease lapsed ``orphan_grace`` ago is it recorded ``interrupted`` with
  ``stop_reason`` ``host-lost``.

A run whose owner lives is never touched, whatever its state. The sweeper
repeats this periodically for anything that escaped (a run of this instance
that no task drives, say) and prunes history by retention (never a live run).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    Instance,
    InstanceState,
    Job,
    LeftoverPolicy,
    Run,
    RunStatus,
    StopReason,
    Trigger,
)
from gatewayd.runners.agent_turn import AgentTurnRunner
from gatewayd.runners.base import Execution
from gatewayd.runners.exec import ExecRunner
from gatewayd.runners.processes import is_running
from gatewayd.runs import RunPipeline
from gatewayd.runs.outcomes import interrupted
from gatewayd.sessions import session_dir
from gatewayd.settings import CLUSTER, Retention
from gatewayd.store.base import Store, StoreHealth

log = structlog.get_logger("gatewayd.recovery")


@dataclass(slots=True)
class Settlement:
    """What one settlement pass did, by run id."""

    adopted: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    # Recorded ended at once: interrupted, or with the status their waiter wrote.
    interrupted: list[str] = field(default_factory=list)
    # Instances taken over.
    taken_over: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.adopted or self.requeued or self.interrupted or self.taken_over)


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
        host_id: str,
        orphan_grace_s: float = CLUSTER.orphan_grace_s,
        lease_s: float = CLUSTER.lease_s,
    ) -> None:
        self._store = store
        self._clock = clock
        self._pipeline = pipeline
        self._exec = exec_runner
        self._agents = agent_runner
        self._instance_id = instance_id
        self._state_dir = state_dir
        self._host_id = host_id
        self._orphan_grace_s = orphan_grace_s
        self._lease_s = lease_s
        # Another instance's lapsed lease is judged only once this one has been in
        # touch with the store for a whole lease: after an outage every lease lapsed,
        # and each instance must first have its time to renew its own.
        self._judges_from = clock.monotonic()
        store.watch_health(self._health_changed)

    def _health_changed(self, health: StoreHealth) -> None:
        if health.writable:
            self._judges_from = self._clock.monotonic() + self._lease_s
        else:
            self._judges_from = math.inf

    async def settle(self) -> Settlement:
        """Take over the dead instances, then settle every live run no live instance drives."""
        done = Settlement()
        owners = await self._take_over_the_dead(done)
        now = await self._store.now()
        for run in await self._store.live_runs():
            owner = owners.get(run.owner or "")
            if not self._needs_settling(run, owner):
                continue
            try:
                if owner is None or owner.on_host(self._host_id):
                    await self._settle(run, owner, done)
                elif self._orphaned_long_enough(owner, now):
                    await self._host_lost(run, owner, done)
            except (RunAlreadyEnded, Conflict):
                continue  # it ended, or was taken over, meanwhile: nothing left to settle
        if done:
            log.info(
                "settled runs left without a live owner",
                taken_over=done.taken_over,
                adopted=done.adopted,
                requeued=done.requeued,
                interrupted=done.interrupted,
            )
        return done

    async def _take_over_the_dead(self, done: Settlement) -> dict[str, Instance]:
        """Take over every instance that is dead to this one; every instance, as it is now."""
        me = str(self._state_dir)
        for other in await self._store.instances():
            if other.instance_id == self._instance_id or other.state is not InstanceState.LIVE:
                continue
            here = other.on_host(self._host_id)
            proven = here and (other.state_dir is None or other.state_dir == me)
            if not proven and self._clock.monotonic() < self._judges_from:
                continue  # not yet in touch with the store for a whole lease
            grace = 0.0 if here else self._orphan_grace_s
            if await self._store.take_over(
                other.instance_id, by=self._instance_id, grace_s=grace, proven_dead=proven
            ):
                done.taken_over.append(other.instance_id)
                log.info(
                    "took over an instance that is gone",
                    instance_id=other.instance_id,
                    host_id=other.host_id,
                    why="its state directory is ours now" if proven else "its lease lapsed",
                )
        return {i.instance_id: i for i in await self._store.instances()}

    def _needs_settling(self, run: Run, owner: Instance | None) -> bool:
        if run.owner == self._instance_id:
            return not self._pipeline.is_watching(run.run_id)  # ours, escaped from its task
        return owner is None or owner.state is not InstanceState.LIVE  # I2

    def _orphaned_long_enough(self, owner: Instance, now: datetime) -> bool:
        lapsed = owner.lease_until
        return lapsed is None or lapsed + timedelta(seconds=self._orphan_grace_s) < now

    async def _claim(self, run: Run) -> Run:
        """Make this instance the run's owner: the claim that only one settler wins.

        The loser gets :class:`Conflict` (or :class:`RunAlreadyEnded`), and
        leaves the run to the winner.
        """
        return await self._store.adopt_run(
            run.run_id, from_owner=run.owner, to_owner=self._instance_id
        )

    async def _settle(self, run: Run, owner: Instance | None, done: Settlement) -> None:
        """Settle a run of this host whose owner is gone (see the module docstring)."""
        previous_owner = run.owner
        run = await self._claim(run)
        job = await self._store.get_job(run.job_id)
        if run.status is RunStatus.QUEUED:
            if run.trigger is Trigger.RETRY and job is not None:
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
        execution = self._execution(run, job, pid, runfiles.state_dir_of(owner, self._state_dir))
        if not await anyio.to_thread.run_sync(is_running, pid, run.pid_start):
            # Gone already: its ending is recorded now, before the socket serves.
            await self._pipeline.record_ended(run, job, execution)
            done.interrupted.append(run.run_id)
            return
        self._pipeline.adopt(run, job, execution)
        done.adopted.append(run.run_id)
        log.info("run re-adopted", run_id=run.run_id, pid=run.pid, from_instance=previous_owner)

    def _execution(self, run: Run, job: Job | None, pid: int, state_dir: Path) -> Execution:
        """The adopted run's work: its process, its files in its owner's state directory."""
        execution: Execution = self._exec.adopt(
            pid=pid,
            pid_start=run.pid_start,
            log_path=runfiles.log_path(state_dir, run.job_id, run.run_id),
            exit_path=runfiles.exit_path(state_dir, run.job_id, run.run_id),
            leftovers=LeftoverPolicy.KILL if job is None else job.leftovers,
        )
        if (
            self._agents is not None
            and job is not None
            and isinstance(job.payload, AgentTurnPayload)
        ):
            execution = self._agents.wrap(execution, run, state_dir)
        return execution

    async def _host_lost(self, run: Run, owner: Instance, done: Settlement) -> None:
        run = await self._claim(run)
        await self._pipeline.finish_unwatched(
            run,
            interrupted(
                f"its host {owner.host_id} has had no live gatewayd instance for "
                f"{self._orphan_grace_s:g}s (orphan_grace) since instance "
                f"{owner.instance_id} was last seen",
                StopReason.HOST_LOST,
                at=self._clock.now(),
            ),
        )
        done.interrupted.append(run.run_id)

    async def _interrupt(self, run: Run, why: str) -> None:
        await self._pipeline.finish_unwatched(
            run, interrupted(why, StopReason.OWNER_GONE, at=self._clock.now())
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
        """Every ``interval_s``: look at the store's files; settle what no live instance
        drives and prune history, unless the store takes no writes now.

        ``after()`` is awaited after each sweep (the daemon reports its status).
        """
        task_status.started()
        while True:
            await self._clock.sleep(interval_s)
            try:
                await self._store.check_files()
                if self._store.health.writable:
                    await self.settle()
                    await self.prune(retention)
                if after is not None:
                    await after()
            except Exception:
                log.exception("a sweep failed; the next one will try again")
