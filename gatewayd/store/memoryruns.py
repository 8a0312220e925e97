"""The memory store's runs and their transitions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import anyio.lowlevel

from gatewayd.errors import Conflict, NotFound, SlotTaken
from gatewayd.model import (
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    StopReason,
)
from gatewayd.store.base import NOTHING, Publication
from gatewayd.store.memoryrecords import MemoryRecords
from gatewayd.store.transitions import (
    Expected,
    adopted,
    cancel_asked,
    check_expected,
    finished,
    slot_key,
    starting,
)


class MemoryRuns(MemoryRecords):
    """The runs and their transitions of :class:`gatewayd.store.memory.MemoryStore`."""

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
                claim_now=expected.claim,  # it does not claim (see Store.claim_due)
            )
        for owner in {run.owner for run in runs}:
            self._fence(owner)
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
        run = starting(
            started_at=started_at, owner=owner, pid=pid, pid_start=pid_start, outcome=outcome
        )(self._live(run_id))
        self._fence(run.owner)
        self._runs[run_id] = run
        self._apply(publication)
        return run

    async def adopt_run(self, run_id: str, *, from_owner: str | None, to_owner: str) -> Run:
        await anyio.lowlevel.checkpoint()
        run = adopted(self._live(run_id), from_owner=from_owner, to_owner=to_owner)
        self._fence(run.owner)
        self._runs[run_id] = run
        return run

    async def finish_run(
        self, run_id: str, outcome: RunOutcome, *, publication: Publication = NOTHING
    ) -> Run:
        await anyio.lowlevel.checkpoint()
        run = finished(self._live(run_id), outcome)
        self._fence(run.owner)
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

    async def latest_run_with(self, job_id: str, status: RunStatus) -> Run | None:
        await anyio.lowlevel.checkpoint()
        found = [r for r in self._runs.values() if r.job_id == job_id and r.status is status]
        return next(iter(self._newest_first(found)), None)

    async def last_successes(self) -> dict[str, datetime]:
        await anyio.lowlevel.checkpoint()
        found: dict[str, datetime] = {}
        for run in self._runs.values():
            ended = run.ended_at
            if run.status is not RunStatus.SUCCEEDED or ended is None:
                continue
            found[run.job_id] = max(ended, found.get(run.job_id, ended))
        return found

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
