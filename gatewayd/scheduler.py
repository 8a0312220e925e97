"""The timer: sleeps until the earliest due slot, fires it through the pipeline.

There is no polling tick. The scheduler keeps a heap of ``(due_at, job_id)``
built from the jobs' stored ``next_slot``; it sleeps until the top entry is due
and wakes early when a job changes. Stale heap entries are dropped lazily.
The slot itself is only ever advanced by the pipeline, in the transaction that
records the slot's run (I7), and only if no other timer advanced it first: any
number of instances may time one store's jobs. Each hears of the job changes
the others make from their ``job`` events on the bus.

While the store takes no writes (a full disk, say), the timer fires nothing: its
slots stay in the heap, and once the store is writable again they are handled
as any late slot is (an ordinary run within ``misfire_grace``, else as the
job's catch-up policy says). No slot is dropped.

Instances share the work: the timer claims its due jobs from the store in one
batch before it fires them (:meth:`Store.claim_due`), and fires only those it
got. On a store whose claims are exclusive it claims ahead: it wakes
``CLAIM_AHEAD_S`` before the first unclaimed slot and claims every job due
within twice that, so that a claim costs one transaction per batch of slots,
not one per slot; each claimed job then fires at its own time. A job another
instance holds is looked at again when that claim lapses, a job whose slot has
moved is timed again, and a job that is gone is dropped. A claim lasts one
lease: a holder that dies leaves its slots to the others within one lease.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

import anyio
import anyio.abc
import structlog

from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import ClaimLost
from gatewayd.events import JOB
from gatewayd.model import Job, JobTiming, Run
from gatewayd.planning import timing_due_at
from gatewayd.racing import first_of
from gatewayd.runs import RunPipeline
from gatewayd.settings import CLUSTER
from gatewayd.store.base import Store
from gatewayd.store.values import Due, DueClaims

log = structlog.get_logger("gatewayd.scheduler")

# After a store error while firing a job, the job is tried again this much later.
RETRY_AFTER_ERROR_S = 5.0
# The most jobs whose due slots are being recorded at once.
MAX_FIRING = 64
# The most due jobs claimed in one transaction.
CLAIM_BATCH = 500
# Jobs due within this long are claimed together (at most a quarter of the claim's hold).
CLAIM_AHEAD_S = 0.2
# The most job changes of other instances the timer may lag behind before it
# reads every job again.
JOB_EVENTS_BEHIND = 10_000
_JOB_STREAM = frozenset({JOB})


class Scheduler:
    """Fires due slots; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        bus: Bus,
        instance_id: str,
        claim_s: float = CLUSTER.lease_s,
    ) -> None:
        self._store = store
        self._clock = clock
        self._pipeline = pipeline
        self._bus = bus
        self._instance_id = instance_id
        self._claim_s = claim_s
        ahead_s = min(CLAIM_AHEAD_S, claim_s / 4) if store.exclusive_claims else 0.0
        self._ahead = timedelta(seconds=ahead_s)
        self._due: dict[str, datetime] = {}  # when the timer looks at each job next
        self._fire_at: dict[str, datetime] = {}  # when each job fires (its slot and stagger)
        self._seen: dict[str, datetime | None] = {}  # each job's next slot, as last read
        self._heap: list[tuple[datetime, int, str]] = []
        # The jobs this instance has claimed, each with when it fires.
        self._claimed: dict[str, datetime] = {}
        self._ready: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()
        self._changed = anyio.Event()
        self._naps = 0
        self._asleep = False
        store.watch_health(lambda _: self._changed.set())

    async def load(self) -> None:
        """Read every job's next slot from the store."""
        for timing in await self._store.job_timings():
            self._track(timing)
        self._changed.set()

    async def follow_jobs(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Take note of the job changes other instances make; until cancelled.

        Every job is read again after the follower fell behind (its subscription
        was dropped), so that no change is missed.
        """
        behind = False
        while True:
            with self._bus.subscribe(
                queue_size=JOB_EVENTS_BEHIND, internal=True, streams=_JOB_STREAM
            ) as subscription:
                if behind:
                    log.warning("the timer fell behind the job changes; reading every job")
                    await self.load()
                else:
                    task_status.started()
                async for envelope in subscription:
                    if (
                        envelope.get("stream") == JOB
                        and envelope.get("instance") != self._instance_id
                    ):
                        await self._reread(envelope["job_id"])
            behind = True

    async def _reread(self, job_id: str) -> None:
        try:
            job = await self._store.get_job(job_id)
        except Exception:
            log.exception("could not read a job another instance changed", job_id=job_id)
            return
        if job is None:
            self.job_removed(job_id)
        else:
            self.job_changed(job)

    @property
    def next_wake_at(self) -> datetime | None:
        """When the scheduler will next fire a slot, or ``None`` if nothing is scheduled."""
        self._drop_stale()
        return min((h[0][0] for h in (self._heap, self._ready) if h), default=None)

    def _wake_at(self) -> datetime | None:
        """When the timer wakes next: to claim the next jobs ahead, or to fire one claimed."""
        self._drop_stale()
        to_claim = self._heap[0][0] - self._ahead if self._heap else None
        to_fire = self._ready[0][0] if self._ready else None
        return min((t for t in (to_claim, to_fire) if t is not None), default=None)

    @property
    def claims_ahead(self) -> timedelta:
        """How long before a slot the timer wakes to claim it (zero on an embedded store)."""
        return self._ahead

    @property
    def tracked(self) -> int:
        """How many jobs the timer times."""
        return len(self._due)

    @property
    def naps(self) -> tuple[int, bool]:
        """How many times the timer went to sleep, and whether it sleeps now."""
        return self._naps, self._asleep

    def job_changed(self, job: Job) -> None:
        """Take note that ``job`` was added or changed; wake up if it is due sooner."""
        self._retime(JobTiming.of(job))

    def _retime(self, timing: JobTiming) -> None:
        """Take note of a job's new timing; wake up if it is due sooner."""
        self._track(timing)
        self._changed.set()

    def job_removed(self, job_id: str) -> None:
        self._due.pop(job_id, None)
        self._fire_at.pop(job_id, None)
        self._seen.pop(job_id, None)
        self._claimed.pop(job_id, None)
        self._changed.set()

    def _track(self, timing: JobTiming) -> None:
        if self._seen.get(timing.job_id, timing.next_slot) != timing.next_slot:
            self._claimed.pop(timing.job_id, None)  # claimed for a slot that has moved
        self._seen[timing.job_id] = timing.next_slot
        due = timing_due_at(timing)
        if due is None:
            self._fire_at.pop(timing.job_id, None)
        else:
            self._fire_at[timing.job_id] = due
        if timing.job_id not in self._claimed:
            self._track_due(timing.job_id, due)

    def _track_due(self, job_id: str, due: datetime | None) -> None:
        if due is None:
            self._due.pop(job_id, None)
            return
        if self._due.get(job_id) == due:
            return
        self._due[job_id] = due
        heapq.heappush(self._heap, (due, next(self._order), job_id))

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        while self._ready and self._claimed.get(self._ready[0][2]) != self._ready[0][0]:
            heapq.heappop(self._ready)

    def _pop_ready(self, now: datetime) -> list[str]:
        """The claimed jobs due by ``now``."""
        ready: list[str] = []
        self._drop_stale()
        while self._ready and self._ready[0][0] <= now:
            _, _, job_id = heapq.heappop(self._ready)
            del self._claimed[job_id]
            ready.append(job_id)
            self._drop_stale()
        return ready

    def _hold(
        self, job_ids: tuple[str, ...], fire_at: dict[str, datetime], now: datetime
    ) -> list[str]:
        """Of the jobs just claimed, those due by ``now``; the rest wait for their time."""
        now_due = []
        for job_id in job_ids:
            at = fire_at[job_id]
            if at <= now:
                now_due.append(job_id)
            else:
                self._claimed[job_id] = at
                heapq.heappush(self._ready, (at, next(self._order), job_id))
        return now_due

    def _pop_due(self, now: datetime, limit: int) -> dict[str, datetime]:
        """The jobs to look at by ``now`` (at most ``limit``), with when each fires."""
        due: dict[str, datetime] = {}
        self._drop_stale()
        while self._heap and self._heap[0][0] <= now and len(due) < limit:
            at, _, job_id = heapq.heappop(self._heap)
            self._due.pop(job_id, None)
            due[job_id] = min(at, self._fire_at.get(job_id, at))
            self._drop_stale()
        return due

    def _seen_due(self, job_ids: Iterable[str]) -> list[Due]:
        return [Due(job_id=job_id, next_slot=self._seen.get(job_id)) for job_id in job_ids]

    def _look_again(self, job_id: str, after_s: float) -> None:
        """Look at the job again in ``after_s`` (the timer wakes ``claims_ahead`` before
        what it tracks, so that is added: a claim held elsewhere is asked for once it
        has lapsed, not again and again until then)."""
        self._track_due(job_id, self._clock.now() + timedelta(seconds=after_s) + self._ahead)
        self._changed.set()

    async def _claim(self, due: list[Due]) -> tuple[str, ...]:
        """Claim ``due`` jobs; the ids this instance got. The others are timed anew."""
        try:
            claims = await self._store.claim_due(due, by=self._instance_id, hold_s=self._claim_s)
        except Exception:
            log.exception("could not claim due jobs; trying again later", jobs=len(due))
            for d in due:
                self._look_again(d.job_id, RETRY_AFTER_ERROR_S)
            return ()
        self._note(claims)
        return claims.mine

    def _note(self, claims: DueClaims) -> None:
        """Time again the jobs a claim did not get (each step wakes the timer if needed)."""
        for timing in claims.moved:
            self._retime(timing)
        for job_id, lapses_in_s in claims.held:
            self._look_again(job_id, lapses_in_s)
        for job_id in claims.gone:
            self.job_removed(job_id)

    async def fire(self, job: Job) -> list[Run]:
        """Handle the due slots of ``job`` now, if this instance can claim them; the runs
        recorded (none if not due, or if another instance holds them)."""
        due = [Due(job_id=job.id, next_slot=job.next_slot)]
        return await self._fire_claimed(job.id) if await self._claim(due) else []

    async def _fire_claimed(self, job_id: str) -> list[Run]:
        try:
            runs, job = await self._pipeline.fire_due(job_id)
        except ClaimLost as exc:
            log.info("another instance fires this slot", job_id=job_id, why=str(exc))
            await self._reread(job_id)
            return []
        except Exception:
            log.exception("could not fire a job; trying again later", job_id=job_id)
            self._look_again(job_id, RETRY_AFTER_ERROR_S)
            return []
        if job is not None:
            self.job_changed(job)
        return runs

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fire slots as they come due, until cancelled.

        Due jobs are fired concurrently (at most ``MAX_FIRING`` at once), so that one
        job's store round trips do not delay the next job's slot.
        """
        firing = anyio.Semaphore(MAX_FIRING)
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                self._changed = anyio.Event()
                if not self._store.health.writable:
                    await self._sleep(None)  # until the store's health changes
                    continue
                now = self._clock.now()
                fire = self._pop_ready(now)
                due = self._pop_due(now + 2 * self._ahead, CLAIM_BATCH)
                if due:
                    mine = await self._claim(self._seen_due(due))
                    fire += self._hold(mine, due, self._clock.now())
                for job_id in fire:
                    await firing.acquire()
                    tg.start_soon(self._fire_and_release, job_id, firing)
                wake_at = self._wake_at()
                if wake_at is not None and wake_at <= self._clock.now():
                    continue
                await self._sleep(wake_at)

    async def _fire_and_release(self, job_id: str, firing: anyio.Semaphore) -> None:
        try:
            await self._fire_claimed(job_id)
        finally:
            firing.release()

    async def _sleep(self, until: datetime | None) -> None:
        changed = self._changed
        self._naps += 1
        self._asleep = True
        try:
            await self._sleep_or_change(until, changed)
        finally:
            self._asleep = False

    async def _sleep_or_change(self, until: datetime | None, changed: anyio.Event) -> None:
        if until is None:
            await changed.wait()
            return
        await first_of(lambda: self._clock.sleep_until(until), changed.wait)
