"""A store held in memory: for unit tests, and the reference for the contract.

One object may be shared by several pipelines (instances) in one process; its
clock, which judges leases, is the one it is given.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio.lowlevel

from gatewayd.clock import Clock, SystemClock
from gatewayd.errors import Conflict, NameTaken, NotFound, SlotTaken
from gatewayd.model import (
    MAIN_SESSION_KEY,
    Instance,
    InstanceState,
    Job,
    JobSource,
    JobTiming,
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    Session,
    StopReason,
    elapsed_ms,
)
from gatewayd.store.base import (
    NOTHING,
    Audit,
    BadEnding,
    Envelope,
    EventsListener,
    Publication,
    SlotClaims,
    Store,
)
from gatewayd.store.transitions import (
    Expected,
    adopted,
    cancel_asked,
    check_expected,
    ending_problems,
    finished,
    slot_key,
    started,
)


class MemoryStore(Store):
    """Every record in dictionaries; nothing survives the process."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._jobs: dict[str, Job] = {}
        self._runs: dict[str, Run] = {}
        self._seq: dict[str, int] = {}
        self._slots: set[tuple[str, datetime]] = set()
        self._instances: dict[str, Instance] = {}
        self._counter = itertools.count(1)
        self._sessions: dict[str, Session] = {}
        self._main_session_id: str | None = None
        self._events: list[Envelope] = []
        self._event_seq = 0
        self._event_listeners: list[EventsListener] = []

    async def open(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()

    # --- instances ------------------------------------------------------------------

    async def now(self) -> datetime:
        await anyio.lowlevel.checkpoint()
        return self._clock.now()

    async def register_instance(self, instance: Instance, *, lease_s: float) -> Instance:
        await anyio.lowlevel.checkpoint()
        if instance.instance_id in self._instances:
            raise Conflict(f"an instance with id {instance.instance_id} exists")
        now = self._clock.now()
        recorded = dataclasses.replace(
            instance,
            heartbeat_at=now,
            lease_until=now + timedelta(seconds=lease_s),
            state=InstanceState.LIVE,
            taken_by=None,
        )
        self._instances[instance.instance_id] = recorded
        return recorded

    async def renew_lease(self, instance_id: str, *, lease_s: float) -> bool:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None or instance.state is not InstanceState.LIVE:
            return False
        now = self._clock.now()
        self._instances[instance_id] = dataclasses.replace(
            instance, heartbeat_at=now, lease_until=now + timedelta(seconds=lease_s)
        )
        return True

    async def stop_instance(self, instance_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is not None and instance.state is InstanceState.LIVE:
            self._instances[instance_id] = dataclasses.replace(
                instance, state=InstanceState.STOPPED, lease_until=self._clock.now()
            )

    async def take_over(
        self, instance_id: str, *, by: str, grace_s: float = 0.0, proven_dead: bool = False
    ) -> bool:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None or instance.state is not InstanceState.LIVE:
            return False
        lapsed = instance.lease_until is None or (
            instance.lease_until + timedelta(seconds=grace_s) < self._clock.now()
        )
        if not (lapsed or proven_dead):
            return False
        self._instances[instance_id] = dataclasses.replace(
            instance, state=InstanceState.GONE, taken_by=by
        )
        return True

    async def get_instance(self, instance_id: str) -> Instance | None:
        await anyio.lowlevel.checkpoint()
        return self._instances.get(instance_id)

    async def instances(self) -> list[Instance]:
        await anyio.lowlevel.checkpoint()
        return list(self._instances.values())

    # --- jobs -----------------------------------------------------------------------

    def _check_name(self, job: Job) -> None:
        for other in self._jobs.values():
            if other.name == job.name and other.id != job.id:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {other.id}", data={"name": job.name}
                )

    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        await self.add_jobs([job], publication=publication)

    async def add_jobs(self, jobs: Sequence[Job], *, publication: Publication = NOTHING) -> None:
        await anyio.lowlevel.checkpoint()
        names = {j.name: j.id for j in self._jobs.values()}
        for job in jobs:
            if job.id in self._jobs:
                raise Conflict(f"a job with id {job.id} exists")
            if job.name in names and names[job.name] != job.id:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {names[job.name]}",
                    data={"name": job.name},
                )
            names[job.name] = job.id
        for job in jobs:
            self._jobs[job.id] = job
        self._apply(publication)

    async def update_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        await anyio.lowlevel.checkpoint()
        if job.id not in self._jobs:
            raise NotFound(f"no job with id {job.id}")
        self._check_name(job)
        self._jobs[job.id] = job
        self._apply(publication)

    async def delete_job(self, job_id: str, *, publication: Publication = NOTHING) -> None:
        await anyio.lowlevel.checkpoint()
        if self._jobs.pop(job_id, None) is None:
            raise NotFound(f"no job with id {job_id}")
        self._apply(publication)

    async def delete_idle_job(self, job_id: str, *, publication: Publication = NOTHING) -> bool:
        await anyio.lowlevel.checkpoint()
        if any(r.job_id == job_id and r.status.is_live for r in self._runs.values()):
            return False
        if self._jobs.pop(job_id, None) is None:
            return False
        self._apply(publication)
        return True

    async def get_job(self, job_id: str) -> Job | None:
        await anyio.lowlevel.checkpoint()
        return self._jobs.get(job_id)

    async def find_job(self, ref: str) -> Job | None:
        await anyio.lowlevel.checkpoint()
        if ref in self._jobs:
            return self._jobs[ref]
        return next((j for j in self._jobs.values() if j.name == ref), None)

    async def count_jobs(self) -> tuple[int, int]:
        await anyio.lowlevel.checkpoint()
        return len(self._jobs), sum(1 for j in self._jobs.values() if j.enabled)

    async def list_jobs(
        self,
        *,
        source: JobSource | None = None,
        enabled_only: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        await anyio.lowlevel.checkpoint()
        jobs = [
            j
            for j in self._jobs.values()
            if (source is None or j.source is source)
            and (j.enabled or not enabled_only)
            and (after is None or j.name > after)
        ]
        return sorted(jobs, key=lambda j: j.name)[:limit]

    async def job_timings(self) -> list[JobTiming]:
        await anyio.lowlevel.checkpoint()
        return [JobTiming.of(job) for job in self._jobs.values()]

    async def record_runs(
        self,
        runs: Sequence[Run],
        *,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
        expected: Expected | None = None,
        publication: Publication = NOTHING,
    ) -> None:
        await anyio.lowlevel.checkpoint()
        if advance_job is not None and advance_job not in self._jobs:
            raise NotFound(f"no job with id {advance_job}")
        if expected is not None and runs:
            job_id = runs[0].job_id
            job = self._jobs.get(job_id)
            check_expected(
                job_id,
                expected,
                live_now=(
                    r.run_id for r in self._runs.values() if r.job_id == job_id and r.status.is_live
                ),
                next_slot_now=None if job is None else job.next_slot,
                advances=advance_job is not None,
            )
        claimed: set[tuple[str, datetime]] = set()
        for run in runs:
            if run.run_id in self._runs:
                raise Conflict(f"a run with id {run.run_id} exists")
            key = slot_key(run)
            if key is not None:
                if key in self._slots or key in claimed:
                    raise SlotTaken(f"job {run.job_id} already has a run for slot {key[1]}")
                claimed.add(key)
        for run in runs:
            self._runs[run.run_id] = run
            self._seq[run.run_id] = next(self._counter)
        self._slots |= claimed
        if advance_job is not None:
            self._jobs[advance_job] = dataclasses.replace(
                self._jobs[advance_job], next_slot=next_slot
            )
        self._apply(publication)

    def _live(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id}")
        return run

    async def start_run(
        self,
        run_id: str,
        *,
        started_at: datetime,
        owner: str,
        pid: int | None,
        pid_start: int | None = None,
        outcome: RunOutcome | None = None,
        publication: Publication = NOTHING,
    ) -> Run:
        await anyio.lowlevel.checkpoint()
        run = started(
            self._live(run_id), started_at=started_at, owner=owner, pid=pid, pid_start=pid_start
        )
        if outcome is not None:
            run = finished(run, outcome)
        self._runs[run_id] = run
        self._apply(publication)
        return run

    async def adopt_run(self, run_id: str, *, from_owner: str | None, to_owner: str) -> Run:
        await anyio.lowlevel.checkpoint()
        run = adopted(self._live(run_id), from_owner=from_owner, to_owner=to_owner)
        self._runs[run_id] = run
        return run

    async def finish_run(
        self, run_id: str, outcome: RunOutcome, *, publication: Publication = NOTHING
    ) -> Run:
        await anyio.lowlevel.checkpoint()
        run = finished(self._live(run_id), outcome)
        self._runs[run_id] = run
        self._apply(publication)
        return run

    async def request_cancel(self, run_id: str, reason: StopReason) -> Run:
        await anyio.lowlevel.checkpoint()
        run = self._runs[run_id] = cancel_asked(self._live(run_id), reason)
        return run

    async def cancel_requests(self, owner: str) -> list[Run]:
        await anyio.lowlevel.checkpoint()
        runs = [
            r
            for r in self._runs.values()
            if r.owner == owner and r.status.is_live and r.cancel_requested is not None
        ]
        return sorted(runs, key=lambda r: self._seq[r.run_id])

    async def get_run(self, run_id: str) -> Run | None:
        await anyio.lowlevel.checkpoint()
        return self._runs.get(run_id)

    def _newest_first(self, runs: list[Run]) -> list[Run]:
        return sorted(runs, key=lambda r: self._seq[r.run_id], reverse=True)

    async def list_runs(self, job_id: str, *, limit: int, before: str | None = None) -> list[Run]:
        await anyio.lowlevel.checkpoint()
        below = None
        if before is not None:
            if before not in self._seq:
                raise NotFound(f"no run with id {before!r}")
            below = self._seq[before]
        runs = [
            r
            for r in self._runs.values()
            if r.job_id == job_id and (below is None or self._seq[r.run_id] < below)
        ]
        return self._newest_first(runs)[:limit]

    async def latest_runs(self, job_ids: Sequence[str] | None = None) -> dict[str, Run]:
        await anyio.lowlevel.checkpoint()
        wanted = None if job_ids is None else set(job_ids)
        latest: dict[str, Run] = {}
        for run in self._newest_first(list(self._runs.values())):
            if (wanted is None or run.job_id in wanted) and run.job_id not in latest:
                latest[run.job_id] = run
        return latest

    async def previous_started_run(self, job_id: str, before_run_id: str) -> Run | None:
        await anyio.lowlevel.checkpoint()
        limit = self._seq.get(before_run_id, 0)
        candidates = [
            r
            for r in self._runs.values()
            if r.job_id == job_id and r.started_at is not None and self._seq[r.run_id] < limit
        ]
        return next(iter(self._newest_first(candidates)), None)

    async def live_runs(self, job_id: str | None = None) -> list[Run]:
        await anyio.lowlevel.checkpoint()
        runs = [
            r
            for r in self._runs.values()
            if r.status.is_live and (job_id is None or r.job_id == job_id)
        ]
        return sorted(runs, key=lambda r: self._seq[r.run_id])

    async def count_runs(self) -> RunCounts:
        await anyio.lowlevel.checkpoint()
        counts: dict[RunStatus, int] = {}
        for run in self._runs.values():
            counts[run.status] = counts.get(run.status, 0) + 1
        return RunCounts(by_status=tuple(sorted(counts.items())))

    async def prune_runs(self, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
        await anyio.lowlevel.checkpoint()
        by_job: dict[str, list[Run]] = {}
        for run in self._newest_first(list(self._runs.values())):
            by_job.setdefault(run.job_id, []).append(run)
        doomed = [
            run
            for runs in by_job.values()
            for index, run in enumerate(runs)
            if run.status.is_terminal and (index >= keep_per_job or run.queued_at < queued_before)
        ]
        gone = {run.run_id for run in doomed}
        for session_key in [
            k for k, s in self._sessions.items() if s.run_id in gone and k != "main"
        ]:
            del self._sessions[session_key]
        for run in doomed:
            del self._runs[run.run_id]
            del self._seq[run.run_id]
            key = slot_key(run)
            if key is not None:
                self._slots.discard(key)
        return doomed

    def _apply(self, publication: Publication) -> None:
        for session in publication.rows():
            if publication.replaces(session):
                self._sessions[session.key] = session
                continue
            current = self._sessions.get(session.key)
            started_at = current.started_at if current is not None else None
            runtime = None
            if started_at is not None and session.ended_at is not None:
                runtime = elapsed_ms(started_at, session.ended_at)
            self._sessions[session.key] = dataclasses.replace(
                session, started_at=started_at, runtime_ms=runtime
            )
        if not publication.events:
            return
        envelopes: list[Envelope] = []
        for body in publication.events:
            self._event_seq += 1
            envelopes.append({"seq": self._event_seq, **body})
        self._events.extend(envelopes)
        for listener in self._event_listeners:
            listener(envelopes)

    async def publish(self, publication: Publication) -> None:
        await anyio.lowlevel.checkpoint()
        self._apply(publication)

    def watch_events(self, listener: EventsListener) -> None:
        self._event_listeners.append(listener)

    async def main_session_id(self, candidate: str) -> str:
        await anyio.lowlevel.checkpoint()
        if self._main_session_id is None:
            main = self._sessions.get(MAIN_SESSION_KEY)
            self._main_session_id = candidate if main is None else main.session_id
        return self._main_session_id

    async def get_session(self, key: str) -> Session | None:
        await anyio.lowlevel.checkpoint()
        return self._sessions.get(key)

    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        await anyio.lowlevel.checkpoint()

        def order(session: Session) -> tuple[bool, datetime | None, str]:
            return (session.started_at is not None, session.started_at, session.key)

        ordered = sorted(self._sessions.values(), key=order, reverse=True)
        if before is not None:
            cursor = self._sessions.get(before)
            if cursor is None:
                raise NotFound(f"no session with key {before!r}")
            ordered = ordered[ordered.index(cursor) + 1 :]
        return ordered[:limit]

    async def last_event_seq(self) -> int:
        await anyio.lowlevel.checkpoint()
        return self._event_seq

    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        await anyio.lowlevel.checkpoint()
        return [dict(e) for e in self._events if e["seq"] > seq][:limit]

    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        await anyio.lowlevel.checkpoint()
        return [dict(e) for e in self._events[-limit:]] if limit > 0 else []

    async def prune_events(self, *, keep: int) -> int:
        await anyio.lowlevel.checkpoint()
        gone = max(0, len(self._events) - keep)
        del self._events[:gone]
        return gone

    async def audit(self) -> Audit:
        await anyio.lowlevel.checkpoint()
        claims: dict[tuple[str, datetime], int] = {}
        for run in self._runs.values():
            key = slot_key(run)
            if key is not None:
                claims[key] = claims.get(key, 0) + 1
        bad = [
            BadEnding(run_id=r.run_id, job_id=r.job_id, status=r.status.value, problem=problem)
            for r in self._runs.values()
            for problem in ending_problems(r)
        ]
        return Audit(
            slots_used_twice=tuple(
                SlotClaims(job_id=job_id, scheduled_for=slot, runs=n)
                for (job_id, slot), n in sorted(claims.items())
                if n > 1
            ),
            bad_endings=tuple(bad),
        )
