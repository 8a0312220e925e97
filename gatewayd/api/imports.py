"""Importing another scheduler's jobs and history: checked against the store, then all at once.

A plan (see :mod:`gatewayd.importers.plan`) is judged job by job: one whose
origin is in the store already was imported before and is left alone; one
whose name a job has is reported and skipped, never overwritten; one that
cannot be carried over says why. The rest, with the history that retention
would keep, are stored in one transaction, or not at all. A dry run judges the
same way and stores nothing. The other scheduler's files are only read.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import anyio.to_thread
import structlog

from gatewayd.api.jobs import Jobs
from gatewayd.api.values import ImportOutcome, ImportReport, JobImport
from gatewayd.clock import Clock
from gatewayd.errors import Conflict, InvalidInput, NameTaken
from gatewayd.ids import new_run_id
from gatewayd.importers import openclaw
from gatewayd.importers.plan import Plan, PlannedJob, PlannedRun
from gatewayd.model import Job, Origin, Run, RunStatus, session_key_for
from gatewayd.planning import zone
from gatewayd.settings import Retention
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.api")


def _run(planned: PlannedRun, job: Job) -> Run:
    run_id = new_run_id(planned.started_at)
    skipped = planned.status is RunStatus.SKIPPED
    return Run(
        run_id=run_id,
        job_id=job.id,
        job_name=job.name,
        trigger=planned.trigger,
        status=planned.status,
        queued_at=planned.started_at,
        started_at=None if skipped else planned.started_at,
        ended_at=planned.ended_at,
        duration_ms=None if skipped else planned.duration_ms,
        error=planned.error,
        summary=planned.summary,
        session_key=session_key_for(job, run_id),
        imported=True,
    )


class Imports:
    """The ``import`` operations."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        jobs: Jobs,
        retention: Retention,
    ) -> None:
        self._store = store
        self._clock = clock
        self._jobs = jobs
        self._retention = retention

    async def openclaw(
        self, directory: Path, *, host_zone: str, alert_sink: str | None, dry_run: bool
    ) -> ImportReport:
        """Import the OpenClaw cron store under ``directory``, or say what it would do."""
        try:
            zone(host_zone)
        except InvalidInput as exc:
            raise InvalidInput(f"host_zone: {exc.message}", data={"field": "host_zone"}) from None
        if alert_sink is not None:
            self._jobs.check_sink(alert_sink, field="--alert-sink")
        read = partial(
            openclaw.read_plan,
            directory,
            host_zone=host_zone,
            alert_sink=alert_sink,
            now=self._clock.now(),
        )
        plan = await anyio.to_thread.run_sync(read)
        return await self.apply(plan, dry_run=dry_run)

    async def apply(self, plan: Plan, *, dry_run: bool) -> ImportReport:
        """Judge each planned job against the store; unless ``dry_run``, store the ones
        to import with their history in one transaction. A refusal by the store (a
        name or an origin taken meanwhile, a fault) leaves nothing behind."""
        if not dry_run:
            self._store.check_writable()
        existing = await self._store.list_jobs()
        # Checking every spec and making every run is CPU work a long history makes
        # long: done on a worker thread, so that the timer keeps time meanwhile.
        judge = partial(self._judge_all, plan, existing, dry_run=dry_run)
        report, history = await anyio.to_thread.run_sync(judge)
        if dry_run:
            return report
        return await self._store_jobs(report, history)

    def _judge_all(
        self, plan: Plan, existing: list[Job], *, dry_run: bool
    ) -> tuple[ImportReport, list[Run]]:
        """The report of every planned job, and (unless ``dry_run``) the runs to store."""
        by_origin = {j.origin: j for j in existing if j.origin is not None}
        by_name = {j.name: j for j in existing}
        cutoff = self._clock.now() - timedelta(seconds=self._retention.max_age_s)
        judged: list[JobImport] = []
        taken: dict[str, str] = {}
        for planned in plan.jobs:
            judged.append(self._judge(plan, planned, by_origin, by_name, taken, cutoff, dry_run))
        report = ImportReport(
            plan=plan, dry_run=dry_run, jobs=tuple(judged), retention=self._retention
        )
        history = [
            _run(run, item.job)
            for item in judged
            if item.outcome is ImportOutcome.IMPORTED and item.job is not None
            for run in item.kept
        ]
        return report, history

    def _judge(
        self,
        plan: Plan,
        planned: PlannedJob,
        by_origin: dict[Origin, Job],
        by_name: dict[str, Job],
        taken: dict[str, str],
        cutoff: datetime,
        dry_run: bool,
    ) -> JobImport:
        origin = Origin(system=plan.system, id=planned.origin_id)
        if origin in by_origin:
            before = by_origin[origin]
            return JobImport(
                planned=planned,
                outcome=ImportOutcome.ALREADY_IMPORTED,
                reason=f"imported before, as job {before.id} ({before.name!r})",
                job=before,
            )
        if planned.spec is None:
            return JobImport(
                planned=planned, outcome=ImportOutcome.NOT_CARRIED, reason=planned.refusal
            )
        try:
            job = self._jobs.prepare(planned.spec, allow_past_at=True)
        except InvalidInput as exc:
            return JobImport(planned=planned, outcome=ImportOutcome.NOT_CARRIED, reason=exc.message)
        job = replace(job, origin=origin)
        if job.name in by_name:
            holder = by_name[job.name]
            return JobImport(
                planned=planned,
                outcome=ImportOutcome.NAME_TAKEN,
                reason=f"gatewayd's job {holder.id} has the name {job.name!r}; left as it is",
            )
        if job.name in taken:
            return JobImport(
                planned=planned,
                outcome=ImportOutcome.NAME_TAKEN,
                reason=f"{plan.system} job {taken[job.name]} of this import has the name "
                f"{job.name!r}",
            )
        taken[job.name] = planned.origin_id
        kept = [r for r in planned.history.runs if r.started_at >= cutoff]
        return JobImport(
            planned=planned,
            outcome=ImportOutcome.WOULD_IMPORT if dry_run else ImportOutcome.IMPORTED,
            job=job,
            kept=tuple(kept[-self._retention.keep_per_job :]),
        )

    async def _store_jobs(self, report: ImportReport, history: list[Run]) -> ImportReport:
        jobs = [
            j.job for j in report.jobs if j.outcome is ImportOutcome.IMPORTED and j.job is not None
        ]
        if not jobs:
            return report
        try:
            await self._jobs.add_prepared(jobs, history=history)
        except (NameTaken, Conflict) as exc:
            raise type(exc)(f"{exc.message}; nothing was imported", data=exc.data) from None
        log.info(
            "jobs imported",
            system=report.plan.system,
            jobs=len(jobs),
            runs=len(history),
            store=report.plan.store,
        )
        return report
