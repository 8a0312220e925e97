"""Admission: which new runs a job gets, by its overlap policy and its due slots (I6, I7).

Every run is minted here and recorded ``queued`` (or ``skipped``) before
anything else happens to it, with the slot it consumes. A manual run and the
runs of a job's due slots are decided on the job's live runs and its next
slot, as read from the store; the store records them only if the job is still
as the decision saw it (:class:`gatewayd.store.transitions.Expected`), so two
instances sharing the store can never both admit a run that the overlap policy
allows once, nor both fire one slot. A stale decision is made again on fresh
state. The job's lock only spares this instance's own tasks that retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

import anyio

from gatewayd.clock import Clock
from gatewayd.errors import StaleDecision
from gatewayd.ids import new_run_id
from gatewayd.model import (
    ErrorKind,
    Job,
    Run,
    RunStatus,
    StopReason,
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
)
from gatewayd.runs.handles import Handles
from gatewayd.runs.recording import Recorder
from gatewayd.runs.supervision import Supervisor
from gatewayd.settings import SCHEDULER
from gatewayd.store.base import Store
from gatewayd.store.transitions import Expected

T = TypeVar("T")
# How many times a decision is made again on fresh state before the conflict is
# reported (each time, another decider won: the job has moved on).
MAX_DECISIONS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The answer to a request for a run: the new run, or the live run that refused it."""

    run: Run
    ran: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Catchup:
    """How far back missed slots are looked for, and how many of them run."""

    window_s: float = SCHEDULER.catchup_window_s
    limits: CatchupLimits = CatchupLimits()


class _JobLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0


class JobLocks:
    """One lock per job, held by whoever decides about the job's runs and slots."""

    def __init__(self) -> None:
        self._locks: dict[str, _JobLock] = {}

    @asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        """Hold the job's lock; it exists only while someone holds it or waits for it."""
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


def new_run(
    job: Job,
    *,
    owner: str,
    trigger: Trigger,
    now: datetime,
    scheduled_for: datetime | None = None,
    attempt: int = 1,
) -> Run:
    """A new ``queued`` run of ``job``, owned by instance ``owner``."""
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
        owner=owner,
    )


def _seen(live: Sequence[Run]) -> frozenset[str]:
    return frozenset(run.run_id for run in live)


async def _until_fresh(decide: Callable[[], Awaitable[T]]) -> T:
    """``decide()``, made again while the store finds it stale."""
    for _ in range(MAX_DECISIONS - 1):
        try:
            return await decide()
        except StaleDecision:
            continue
    return await decide()


def _waits_for(action: OverlapAction, live: Sequence[Run]) -> tuple[str, ...]:
    if action in (OverlapAction.QUEUE, OverlapAction.REPLACE):
        return tuple(r.run_id for r in live)
    return ()


class Admission:
    """Decides and records new runs, then launches them; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        recorder: Recorder,
        supervisor: Supervisor,
        handles: Handles,
        locks: JobLocks,
        instance_id: str,
        catchup: Catchup,
        on_skipped: Callable[[Run, Job], None],
    ) -> None:
        self._store = store
        self._on_skipped = on_skipped
        self._clock = clock
        self._recorder = recorder
        self._supervisor = supervisor
        self._handles = handles
        self._locks = locks
        self._instance_id = instance_id
        self._catchup = catchup

    def _for_slot(self, job: Job, decision: SlotDecision, *, now: datetime) -> Run:
        return new_run(
            job,
            owner=self._instance_id,
            trigger=decision.trigger,
            now=now,
            scheduled_for=decision.scheduled_for,
        )

    def _skipped(
        self, job: Job, decision: SlotDecision, *, now: datetime, kind: ErrorKind, error: str
    ) -> Run:
        run = self._for_slot(job, decision, now=now)
        return replace(run, status=RunStatus.SKIPPED, ended_at=now, error=error, error_kind=kind)

    async def manual(self, job: Job) -> Submitted:
        """Queue a manual run of ``job`` now, as its overlap policy allows (I6)."""
        if not needs_live_runs(job.overlap):
            return await self._submit(job, [], OverlapAction.START, expected=None)
        async with self._locks.hold(job.id):
            return await _until_fresh(lambda: self._manual(job))

    async def _manual(self, job: Job) -> Submitted:
        live = await self._store.live_runs(job.id)
        action = decide_overlap(job.overlap, live)
        if action is OverlapAction.SKIP:
            running = [r for r in live if r.status is RunStatus.RUNNING]
            return Submitted(run=(running or live)[0], ran=False)
        return await self._submit(job, live, action, expected=Expected(live=_seen(live)))

    async def _submit(
        self, job: Job, live: Sequence[Run], action: OverlapAction, *, expected: Expected | None
    ) -> Submitted:
        now = self._clock.now()
        run = new_run(job, owner=self._instance_id, trigger=Trigger.MANUAL, now=now)
        await self._recorder.record_new([run], now=now, expected=expected)
        self._supervisor.launch(run, job, after=_waits_for(action, live))
        self._replace(action, live)
        return Submitted(run=run, ran=True)

    async def retry(self, job: Job, *, attempt: int, not_before: datetime) -> Run:
        """Record and launch attempt ``attempt`` of ``job``, to start at ``not_before``."""
        now = self._clock.now()
        retry = new_run(
            job,
            owner=self._instance_id,
            trigger=Trigger.RETRY,
            now=now,
            scheduled_for=not_before,
            attempt=attempt,
        )
        await self._recorder.record_new([retry], now=now)
        self._supervisor.launch(retry, job)
        return retry

    async def fire_due(self, job_id: str) -> tuple[list[Run], Job | None]:
        """Record and start what the due slots of a job call for; return the runs and the job.

        The caller holds this instance's claim on the job's slot (see
        :meth:`Store.claim_due`). The slots and the job's new ``next_slot`` are
        recorded in one transaction, only if no other timer advanced the slot
        meanwhile and the claim still holds (else
        :class:`gatewayd.errors.ClaimLost`). Returns the job as it is afterwards
        (``None`` if it no longer exists).
        """
        async with self._locks.hold(job_id):
            return await _until_fresh(lambda: self._fire_due(job_id))

    async def _fire_due(self, job_id: str) -> tuple[list[Run], Job | None]:
        job = await self._store.get_job(job_id)
        if job is None or not job.enabled:
            return [], job
        now = self._clock.now()
        window = job.catchup_window_s
        plan = plan_due(
            job,
            now,
            window_s=self._catchup.window_s if window is None else window,
            limits=self._catchup.limits,
        )
        if not plan.decisions:
            return [], job
        runs = await self._record_plan(job, plan, now)
        return runs, replace(job, next_slot=plan.next_slot)

    async def _record_plan(self, job: Job, plan: DuePlan, now: datetime) -> list[Run]:
        """Record the plan's runs; each ordinary slot meets the overlap policy.

        An ordinary slot's run is decided against what is ahead of it: the job's
        live runs, then the runs of this plan before it, as if each slot had
        fired on time (one that starts counts as running). Catch-up runs wait in
        line, one after another.
        """
        looks = needs_live_runs(job.overlap)
        live = await self._store.live_runs(job.id) if looks else []
        expected = Expected(
            live=_seen(live) if looks else None,
            next_slot=job.next_slot,
            claim=self._instance_id,
        )
        ahead = list(live)
        runs: list[Run] = []
        launches: list[tuple[Run, tuple[str, ...]]] = []
        replacing = False
        previous: Run | None = None
        for decision in plan.decisions:
            if decision.skip is not None:
                error = decision.note or decision.skip.value
                runs.append(self._skipped(job, decision, now=now, kind=decision.skip, error=error))
                continue
            if decision.trigger is Trigger.CATCHUP and previous is not None:
                after: tuple[str, ...] = (previous.run_id,)
            else:
                action = decide_overlap(job.overlap, ahead)
                if action is OverlapAction.SKIP:
                    error = f"skipped: run {ahead[0].run_id} of the job is still live"
                    runs.append(
                        self._skipped(job, decision, now=now, kind=ErrorKind.OVERLAP, error=error)
                    )
                    continue
                after = _waits_for(action, ahead)
                replacing = replacing or action is OverlapAction.REPLACE
            run = self._for_slot(job, decision, now=now)
            runs.append(run)
            launches.append((run, after))
            ahead.append(run if after else replace(run, status=RunStatus.RUNNING))
            previous = run
        await self._recorder.record_new(
            runs, now=now, advance_job=job.id, next_slot=plan.next_slot, expected=expected
        )
        for run, after in launches:
            self._supervisor.launch(run, job, after=after)
        if replacing:
            self._replace(OverlapAction.REPLACE, live)
        for run in runs:
            if run.status is RunStatus.SKIPPED:
                self._on_skipped(run, job)
        return runs

    def _replace(self, action: OverlapAction, live: Sequence[Run]) -> None:
        if action is OverlapAction.REPLACE:
            self._handles.request_stop([run.run_id for run in live], StopReason.REPLACED)
