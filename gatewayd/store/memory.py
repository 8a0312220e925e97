"""A store held in memory: for unit tests, and the reference for the contract."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio.lowlevel

from gatewayd.errors import Conflict, NameTaken, NotFound, SlotTaken
from gatewayd.model import (
    Instance,
    Job,
    JobSource,
    JobTiming,
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    Session,
    elapsed_ms,
)
from gatewayd.store.base import NOTHING, Publication, Store
from gatewayd.store.transitions import adopted, finished, slot_key, started


class MemoryStore(Store):
    """Every record in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._runs: dict[str, Run] = {}
        self._seq: dict[str, int] = {}
        self._slots: set[tuple[str, datetime]] = set()
        self._instances: dict[str, Instance] = {}
        self._counter = itertools.count(1)
        self._sessions: dict[str, Session] = {}
        self._events: list[dict[str, Any]] = []
        self._event_seq = 0

    async def open(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def register_instance(self, instance: Instance) -> None:
        await anyio.lowlevel.checkpoint()
        self._instances[instance.instance_id] = instance

    async def heartbeat(self, instance_id: str, at: datetime) -> None:
        await anyio.lowlevel.checkpoint()
        if instance_id in self._instances:
            self._instances[instance_id] = dataclasses.replace(
                self._instances[instance_id], heartbeat_at=at
            )

    async def get_instance(self, instance_id: str) -> Instance | None:
        await anyio.lowlevel.checkpoint()
        return self._instances.get(instance_id)

    def _check_name(self, job: Job) -> None:
        for other in self._jobs.values():
            if other.name == job.name and other.id != job.id:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {other.id}", data={"name": job.name}
                )

    async def add_job(self, job: Job) -> None:
        await anyio.lowlevel.checkpoint()
        if job.id in self._jobs:
            raise Conflict(f"a job with id {job.id} exists")
        self._check_name(job)
        self._jobs[job.id] = job

    async def add_jobs(self, jobs: Sequence[Job]) -> None:
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

    async def update_job(self, job: Job) -> None:
        await anyio.lowlevel.checkpoint()
        if job.id not in self._jobs:
            raise NotFound(f"no job with id {job.id}")
        self._check_name(job)
        self._jobs[job.id] = job

    async def delete_job(self, job_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        if self._jobs.pop(job_id, None) is None:
            raise NotFound(f"no job with id {job_id}")

    async def delete_idle_job(self, job_id: str) -> bool:
        await anyio.lowlevel.checkpoint()
        if any(r.job_id == job_id and r.status.is_live for r in self._runs.values()):
            return False
        return self._jobs.pop(job_id, None) is not None

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
        publication: Publication = NOTHING,
    ) -> None:
        await anyio.lowlevel.checkpoint()
        if advance_job is not None and advance_job not in self._jobs:
            raise NotFound(f"no job with id {advance_job}")
        self._check(publication)
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
        self._check(publication)
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
        self._check(publication)
        self._runs[run_id] = run
        self._apply(publication)
        return run

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

    def _check(self, publication: Publication) -> None:
        """Raise what ``_apply`` would fail on, before anything is changed."""
        seen: set[int] = set()
        for seq, _ in publication.events:
            stored = seq <= self._event_seq and any(e["seq"] == seq for e in self._events)
            if stored or seq in seen:
                raise Conflict(f"an event with seq {seq} exists")
            seen.add(seq)

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
        for seq, body in publication.events:
            self._event_seq = max(self._event_seq, seq)
            bisect.insort(self._events, {"seq": seq, **body}, key=lambda e: e["seq"])

    async def publish(self, publication: Publication) -> None:
        await anyio.lowlevel.checkpoint()
        self._check(publication)
        self._apply(publication)

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
