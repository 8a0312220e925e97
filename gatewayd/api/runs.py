"""Running jobs: a run now (or if due), cancelling, waiting for an ending, the history."""

from __future__ import annotations

import anyio

from gatewayd import bounds
from gatewayd.api.reads import Reads
from gatewayd.api.values import NotRun, RunRequest
from gatewayd.errors import NotFound
from gatewayd.model import Run, RunStatus, StopReason
from gatewayd.runs import RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.store.base import Store
from gatewayd.store.transitions import nothing_to_cancel


class Runs:
    """The operations on runs."""

    def __init__(
        self, *, store: Store, pipeline: RunPipeline, scheduler: Scheduler, reads: Reads
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._reads = reads

    async def get(self, run_id: str) -> Run:
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    async def request(self, ref: str, *, due: bool) -> RunRequest:
        """A run of the job now, as its overlap policy allows; with ``due``, only if a slot
        is due (it is then handled as the timer would)."""
        job = await self._reads.job(ref)
        self._store.check_writable()
        if due:
            runs = await self._scheduler.fire(job)
            started = [r for r in runs if r.status is RunStatus.QUEUED]
            if not runs:
                return RunRequest(ran=False, reason=NotRun.NOT_DUE)
            if not started:
                live = await self._store.live_runs(job.id)
                return RunRequest(
                    ran=False, reason=NotRun.ALREADY_RUNNING, run=live[0] if live else runs[-1]
                )
            return RunRequest(ran=True, run=started[-1])
        submitted = await self._pipeline.submit_manual(job)
        if not submitted.ran:
            return RunRequest(ran=False, reason=NotRun.ALREADY_RUNNING, run=submitted.run)
        return RunRequest(ran=True, run=submitted.run)

    async def cancel(self, ref: str, *, run_only: bool = False) -> list[Run]:
        """Cancel a run by id, or (unless ``run_only``) every live run of a job by id or name.

        Each run is returned once its ending is recorded. While the store takes no
        writes, a run this instance drives is stopped all the same (a runaway job
        may be what fills the disk), and returned as recorded so far: its
        ending is written once the store takes writes again.
        """
        run = await self._store.get_run(ref)
        if run is None and run_only:
            raise NotFound(f"no run with id {ref!r}")
        if run is not None:
            targets = [run]
        else:
            job = await self._reads.job(ref)
            targets = await self._store.live_runs(job.id)
            if not targets:
                raise NotFound(f"job {job.name!r} has no queued or running run to cancel")
        if not self._store.health.writable:
            for target in targets:
                if target.status.is_terminal:
                    raise nothing_to_cancel(target)
                if not self._pipeline.request_stop(target.run_id, reason=StopReason.CANCELLED):
                    self._store.check_writable()  # not ours to stop: its ending needs a write
            return targets
        return [await self._pipeline.cancel(r.run_id, reason=StopReason.CANCELLED) for r in targets]

    async def wait(self, run_id: str, *, timeout_s: float | None) -> Run:
        """The run once it has ended, or as it is after ``timeout_s``; ``NotFound`` if unknown."""
        ended = self._pipeline.recent_ending(run_id)
        if ended is not None:
            return ended
        with anyio.move_on_after(timeout_s):
            return await self._pipeline.wait(run_id)
        return await self.get(run_id)

    async def history(self, ref: str, *, limit: int, before: str | None = None) -> list[Run]:
        """A page of a job's runs, newest first: up to ``limit`` older than run ``before``."""
        bounds.RUN_PAGE.check(limit)
        job_id = await self._history_of(ref)
        return await self._store.list_runs(job_id, limit=limit, before=before)

    async def last(self, ref: str) -> Run | None:
        job_id = await self._history_of(ref)
        return (await self._store.latest_runs([job_id])).get(job_id)

    async def _history_of(self, ref: str) -> str:
        """A job's id; for a deleted job, its id as recorded by its runs."""
        job = await self._store.find_job(ref)
        if job is not None:
            return job.id
        if await self._store.list_runs(ref, limit=1):
            return ref
        raise NotFound(f"no job with id or name {ref!r}")
