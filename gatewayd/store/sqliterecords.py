"""The SQLite store's instances, jobs and runs: each method one read or one transaction.

The SQL of each is in ``sqliteinstances``, ``sqlitejobs`` and ``sqliteruns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from gatewayd.model import (
    Instance,
    Job,
    JobSource,
    JobTiming,
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    StopReason,
)
from gatewayd.store import sqliteinstances, sqlitejobs, sqliteruns
from gatewayd.store.base import NOTHING, Publication
from gatewayd.store.sqliteaccess import SQLiteAccess
from gatewayd.store.transitions import Expected, adopted, cancel_asked, finished, starting


class SQLiteInstances(SQLiteAccess):
    """Instances and their leases, judged by the database's clock."""

    async def now(self) -> datetime:
        return await self._call(sqliteinstances.now)

    async def register_instance(self, instance: Instance, *, lease_s: float) -> Instance:
        op = partial(sqliteinstances.register, instance=instance, lease_s=lease_s)
        return await self._write(op, durable=False, label="the instance record")

    async def renew_lease(self, instance_id: str, *, lease_s: float) -> bool:
        op = partial(sqliteinstances.renew, instance_id=instance_id, lease_s=lease_s)
        return await self._write(op, durable=False, label="a lease")

    async def stop_instance(self, instance_id: str) -> None:
        op = partial(sqliteinstances.stop, instance_id=instance_id)
        await self._write(op, durable=False, label="the instance's stop")

    async def take_over(
        self, instance_id: str, *, by: str, grace_s: float = 0.0, proven_dead: bool = False
    ) -> bool:
        op = partial(
            sqliteinstances.take_over,
            instance_id=instance_id,
            by=by,
            grace_s=grace_s,
            proven_dead=proven_dead,
        )
        return await self._write(op, durable=False, label=f"taking over {instance_id}")

    async def get_instance(self, instance_id: str) -> Instance | None:
        return await self._call(partial(sqliteinstances.get, instance_id=instance_id))

    async def instances(self) -> list[Instance]:
        return await self._call(sqliteinstances.every)


class SQLiteJobs(SQLiteAccess):
    """Jobs, and their slots."""

    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        op = partial(sqlitejobs.add, jobs=[job], publication=publication)
        await self._publish(op, durable=False, label=f"job {job.name!r}")

    async def add_jobs(
        self,
        jobs: Sequence[Job],
        *,
        history: Sequence[Run] = (),
        publication: Publication = NOTHING,
    ) -> None:
        op = partial(
            sqlitejobs.add, jobs=list(jobs), publication=publication, history=list(history)
        )
        await self._publish(op, durable=False, label=f"{len(jobs)} jobs")

    async def update_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        op = partial(sqlitejobs.update, job=job, publication=publication)
        await self._publish(op, durable=False, label=f"job {job.name!r}")

    async def delete_job(self, job_id: str, *, publication: Publication = NOTHING) -> None:
        op = partial(sqlitejobs.delete, job_id=job_id, publication=publication)
        await self._publish(op, durable=False, label=f"removing job {job_id}")

    async def delete_idle_job(self, job_id: str, *, publication: Publication = NOTHING) -> bool:
        op = partial(sqlitejobs.delete_idle, job_id=job_id, publication=publication)
        return await self._publish(op, label=f"removing one-shot job {job_id}")

    async def get_job(self, job_id: str) -> Job | None:
        return await self._call(partial(sqlitejobs.get, job_id=job_id))

    async def find_job(self, ref: str) -> Job | None:
        return await self._call(partial(sqlitejobs.find, ref=ref))

    async def count_jobs(self) -> tuple[int, int]:
        return await self._call(sqlitejobs.count)

    async def list_jobs(
        self,
        *,
        source: JobSource | None = None,
        enabled_only: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        op = partial(
            sqlitejobs.page, source=source, enabled_only=enabled_only, after=after, limit=limit
        )
        return await self._call(op)

    async def job_timings(self) -> list[JobTiming]:
        return await self._call(sqlitejobs.timings)


class SQLiteRuns(SQLiteAccess):
    """Runs and their transitions."""

    async def record_runs(
        self,
        runs: Sequence[Run],
        *,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
        expected: Expected | None = None,
        publication: Publication = NOTHING,
    ) -> None:
        op = partial(
            sqliteruns.record,
            runs=list(runs),
            advance_job=advance_job,
            next_slot=next_slot,
            expected=expected,
            publication=publication,
        )
        await self._publish(op, label=", ".join(f"run {r.run_id} queued" for r in runs[:5]))

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
        change = starting(
            started_at=started_at, owner=owner, pid=pid, pid_start=pid_start, outcome=outcome
        )
        op = sqliteruns.transition(run_id, change, publication)
        return await self._publish(op, label=f"run {run_id} started")

    async def adopt_run(self, run_id: str, *, from_owner: str | None, to_owner: str) -> Run:
        op = sqliteruns.transition(
            run_id, lambda run: adopted(run, from_owner=from_owner, to_owner=to_owner)
        )
        return await self._publish(op, label=f"run {run_id} adopted")

    async def finish_run(
        self, run_id: str, outcome: RunOutcome, *, publication: Publication = NOTHING
    ) -> Run:
        op = sqliteruns.transition(run_id, lambda run: finished(run, outcome), publication)
        return await self._publish(op, label=f"run {run_id} ended {outcome.status.value}")

    async def request_cancel(self, run_id: str, reason: StopReason) -> Run:
        op = sqliteruns.transition(run_id, lambda run: cancel_asked(run, reason), fenced=False)
        return await self._publish(op, durable=False, label=f"a stop of run {run_id}")

    async def cancel_requests(self, owner: str) -> list[Run]:
        return await self._call(partial(sqliteruns.cancel_requests, owner=owner))

    async def get_run(self, run_id: str) -> Run | None:
        return await self._call(partial(sqliteruns.get, run_id=run_id))

    async def list_runs(self, job_id: str, *, limit: int, before: str | None = None) -> list[Run]:
        return await self._call(partial(sqliteruns.page, job_id=job_id, limit=limit, before=before))

    async def latest_runs(self, job_ids: Sequence[str] | None = None) -> dict[str, Run]:
        return await self._call(partial(sqliteruns.latest, job_ids=job_ids))

    async def previous_started_run(self, job_id: str, before_run_id: str) -> Run | None:
        op = partial(sqliteruns.previous_started, job_id=job_id, before_run_id=before_run_id)
        return await self._call(op)

    async def latest_run_with(self, job_id: str, status: RunStatus) -> Run | None:
        return await self._call(partial(sqliteruns.latest_with, job_id=job_id, status=status))

    async def last_successes(self) -> dict[str, datetime]:
        return await self._call(sqliteruns.last_successes)

    async def live_runs(self, job_id: str | None = None) -> list[Run]:
        return await self._call(partial(sqliteruns.live, job_id=job_id))

    async def count_runs(self) -> RunCounts:
        return await self._call(sqliteruns.count)

    async def prune_runs(self, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
        op = partial(sqliteruns.prune, keep_per_job=keep_per_job, queued_before=queued_before)
        return await self._write(op, durable=False, label="pruning runs")
