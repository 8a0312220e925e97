"""The memory store's jobs."""

from __future__ import annotations

from collections.abc import Sequence

import anyio.lowlevel

from gatewayd.errors import Conflict, NameTaken, NotFound
from gatewayd.model import Job, JobSource, JobTiming, Run
from gatewayd.store.base import NOTHING, Publication
from gatewayd.store.memoryrecords import MemoryRecords
from gatewayd.store.values import check_origins_apart, origin_taken


class MemoryJobs(MemoryRecords):
    """The jobs of :class:`gatewayd.store.memory.MemoryStore`."""

    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        await self.add_jobs([job], publication=publication)

    async def add_jobs(
        self,
        jobs: Sequence[Job],
        *,
        history: Sequence[Run] = (),
        publication: Publication = NOTHING,
    ) -> None:
        await anyio.lowlevel.checkpoint()
        names = {j.name: j.id for j in self._jobs.values()}
        check_origins_apart(jobs)
        origins = {j.origin for j in self._jobs.values() if j.origin is not None}
        for job in jobs:
            if job.id in self._jobs:
                raise Conflict(f"a job with id {job.id} exists")
            if job.origin in origins:
                raise origin_taken(job)
            if job.name in names and names[job.name] != job.id:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {names[job.name]}",
                    data={"name": job.name},
                )
            names[job.name] = job.id
        for run in history:
            if run.run_id in self._runs:
                raise Conflict(f"a run with id {run.run_id} exists")
        for job in jobs:
            self._jobs[job.id] = job
        for run in history:
            self._runs[run.run_id] = run
            self._seq[run.run_id] = next(self._counter)
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
