"""Changing jobs: add, add many, edit, enable and disable, remove, and reconcile the config's.

Every change is checked in full first, then written to the store with its
``job`` event (which tells the timers of other instances), then told to this
instance's timer. A change a user asked for is refused at once while the store
takes no writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from gatewayd.api.reads import Reads
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import InvalidInput, NameTaken
from gatewayd.events import (
    JobAdded,
    JobDisabled,
    JobEnabled,
    JobEvent,
    JobPaused,
    JobRemoved,
    JobUpdated,
)
from gatewayd.ids import new_job_id
from gatewayd.jobspec import job_from_spec, patched_spec
from gatewayd.model import (
    AgentTurnPayload,
    Job,
    JobSource,
    Run,
    ScheduleKind,
    Standing,
    StandingChange,
    StopReason,
)
from gatewayd.planning import first_slot
from gatewayd.runs import RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.store.base import Store
from gatewayd.views import JsonObject, spec_to_json

log = structlog.get_logger("gatewayd.api")
# The store's lock under which the config's jobs are reconciled, and how long an
# instance waits for another to finish reconciling.
CONFIG_JOBS_LOCK = "config-jobs"
CONFIG_JOBS_LOCK_WAIT_S = 30.0

MAX_BATCH_JOBS = 10_000


class Jobs:
    """The operations that change jobs."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        scheduler: Scheduler,
        reads: Reads,
        bus: Bus,
        agents: frozenset[str] | None = None,
        sinks: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._reads = reads
        self._agents = agents
        self._sinks = sinks
        pipeline.add_finished_listener(self._after_run)

    def _event(self, kind: type[JobEvent], job: Job, by: JobSource) -> JobEvent:
        return kind.of(job, self._clock.now(), source=by, instance=self._reads.identity.instance_id)

    def _check_references(self, job: Job) -> None:
        payload = job.payload
        agents = self._agents
        if (
            isinstance(payload, AgentTurnPayload)
            and agents is not None
            and payload.agent not in agents
        ):
            known = ", ".join(sorted(agents)) or "none"
            raise InvalidInput(
                f"payload.agent: no agent {payload.agent!r} is configured "
                f"(configured: {known}); add [agents.{payload.agent}] to the config"
            )
        for index, sink in enumerate(job.alerts.sinks):
            self.check_sink(sink, field=f"alerts.sinks[{index}]")

    def check_sink(self, sink: str, *, field: str) -> None:
        """Refuse a sink that is not an ``[alerts.NAME]`` of the config, naming ``field``."""
        if sink not in self._sinks:
            known = ", ".join(sorted(self._sinks)) or "none"
            raise InvalidInput(
                f"{field}: no alert sink {sink!r} is configured "
                f"(configured: {known}); add [alerts.{sink}] to the config",
                data={"field": field},
            )

    def prepare(
        self, spec: Any, *, source: JobSource = JobSource.API, allow_past_at: bool = False
    ) -> Job:
        """A new job from ``spec``, checked in full, with its first slot; nothing is stored."""
        now = self._clock.now()
        job = job_from_spec(
            spec,
            job_id=new_job_id(),
            source=source,
            now=now,
            created_at=now,
            updated_at=now,
            allow_past_at=allow_past_at,
        )
        self._check_references(job)
        return dataclasses.replace(job, next_slot=first_slot(job, now))

    async def add(self, spec: Any, *, source: JobSource = JobSource.API) -> Job:
        self._store.check_writable()
        job = self.prepare(spec, source=source)
        await self._bus.publish_with(
            lambda publication: self._store.add_job(job, publication=publication),
            self._event(JobAdded, job, source),
        )
        self._scheduler.job_changed(job)
        log.info("job added", job_id=job.id, name=job.name, source=source.value)
        return job

    async def add_many(self, specs: Any) -> list[Job]:
        """Add many jobs at once: every spec is checked first, then all are stored in one
        transaction; any problem refuses them all, naming the spec's index."""
        if not isinstance(specs, list) or not specs:
            raise InvalidInput("jobs: expected a non-empty list of job specs")
        if len(specs) > MAX_BATCH_JOBS:
            raise InvalidInput(f"jobs: at most {MAX_BATCH_JOBS} jobs at once, got {len(specs)}")
        self._store.check_writable()
        jobs: list[Job] = []
        names: dict[str, int] = {}
        for index, spec in enumerate(specs):
            try:
                job = self.prepare(spec)
            except InvalidInput as exc:
                raise InvalidInput(f"jobs[{index}]: {exc.message}") from None
            if job.name in names:
                raise InvalidInput(f"jobs[{index}]: the name {job.name!r} is given twice")
            names[job.name] = index
            jobs.append(job)
        try:
            await self.add_prepared(jobs)
        except NameTaken as exc:
            taken = names.get(exc.data.get("name", ""))
            prefix = "" if taken is None else f"jobs[{taken}]: "
            raise NameTaken(f"{prefix}{exc.message}; no job was added", data=exc.data) from None
        log.info("jobs added", count=len(jobs))
        return jobs

    async def add_prepared(self, jobs: Sequence[Job], *, history: Sequence[Run] = ()) -> None:
        """Store jobs made by :meth:`prepare`, with ended runs of their ``history``, in one
        transaction (all or none), each with its ``job.added`` event; then tell the timer."""
        await self._bus.publish_with(
            lambda publication: self._store.add_jobs(
                jobs, history=history, publication=publication
            ),
            *(self._event(JobAdded, job, JobSource.API) for job in jobs),
        )
        for job in jobs:
            self._scheduler.job_changed(job)

    async def update(
        self,
        ref: str,
        patch: Any,
        *,
        source: JobSource | None = None,
        by: JobSource = JobSource.API,
        resume: bool = False,
    ) -> Job:
        """Apply ``patch`` to the job; ``source`` changes whose job it is (the config's),
        ``by`` says who changed it (the ``source`` of its event). ``resume`` ends a
        pause after failures (``cron enable``); no other change does. A paused job
        keeps no next slot: its timer fires nothing until it is resumed."""
        self._store.check_writable()
        current = await self._reads.job(ref)
        if source is None and current.source is JobSource.CONFIG:
            raise InvalidInput(
                f"job {current.name!r} is declared in the config file; change it there"
            )
        async with self._pipeline.job_lock(current.id):
            current = await self._reads.job(current.id)
            spec = patched_spec(current, patch)
            schedule_changed = isinstance(patch, dict) and "schedule" in patch
            now = self._clock.now()
            job = job_from_spec(
                spec,
                job_id=current.id,
                source=source or current.source,
                now=now,
                created_at=current.created_at,
                updated_at=now,
                next_slot_value=current.next_slot,
                keep_schedule=None if schedule_changed else current.schedule,
            )
            self._check_references(job)
            job = dataclasses.replace(job, standing=current.standing, origin=current.origin)
            resumes = resume and current.paused is not None
            if job.enabled != current.enabled:
                change = StandingChange.ENABLED if job.enabled else StandingChange.DISABLED
                job = job.with_standing(Standing(change=change, at=now, by=by))
            elif resumes:
                job = job.with_standing(Standing(change=StandingChange.RESUMED, at=now, by=by))
            if job.paused is not None:
                job = dataclasses.replace(job, next_slot=None)  # a paused job's timer fires nothing
            elif (
                schedule_changed
                or resumes
                or (job.enabled and not current.enabled)
                or (job.stagger_s != current.stagger_s and job.next_slot is not None)
            ):
                job = dataclasses.replace(job, next_slot=first_slot(job, now))
            kind: type[JobEvent] = JobUpdated
            if job.enabled != current.enabled or resumes:
                kind = JobEnabled if job.enabled else JobDisabled
            await self._bus.publish_with(
                lambda publication: self._store.update_job(job, publication=publication),
                self._event(kind, job, by),
            )
        self._scheduler.job_changed(job)
        log.info("job updated", job_id=job.id, name=job.name)
        return job

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        """``cron enable`` (which also resumes a paused job) and ``cron disable``."""
        job = await self._reads.job(ref)
        if job.enabled == enabled and not (enabled and job.paused is not None):
            return job
        return await self.update(job.id, {"enabled": enabled}, source=job.source, resume=enabled)

    async def pause(self, job_id: str, *, failures: int, run_id: str) -> Job | None:
        """Pause the job's schedule after ``failures`` in a row, the last ``run_id``
        (the ``pause_after`` rule); ``None`` if it is gone, disabled or paused already."""
        async with self._pipeline.job_lock(job_id):
            current = await self._store.get_job(job_id)
            if current is None or not current.enabled or current.paused is not None:
                return None
            now = self._clock.now()
            change = Standing(
                change=StandingChange.PAUSED, at=now, failures=failures, run_id=run_id
            )
            job = dataclasses.replace(current.with_standing(change), next_slot=None, updated_at=now)
            await self._bus.publish_with(
                lambda publication: self._store.update_job(job, publication=publication),
                self._event(JobPaused, job, job.source),
            )
        self._scheduler.job_changed(job)
        log.warning("job paused after failures", job_id=job.id, name=job.name, failures=failures)
        return job

    async def remove(self, ref: str, *, by: JobSource = JobSource.API) -> Job:
        """Remove the job (one declared in the config file only ``by`` the config)."""
        self._store.check_writable()
        job = await self._reads.job(ref)
        if job.source is JobSource.CONFIG and by is not JobSource.CONFIG:
            raise InvalidInput(f"job {job.name!r} is declared in the config file; remove it there")
        async with self._pipeline.job_lock(job.id):
            await self._bus.publish_with(
                lambda publication: self._store.delete_job(job.id, publication=publication),
                self._event(JobRemoved, job, by),
            )
        self._scheduler.job_removed(job.id)
        for run in await self._store.live_runs(job.id):
            await self._pipeline.cancel(run.run_id, reason=StopReason.JOB_REMOVED)
        log.info("job removed", job_id=job.id, name=job.name)
        return job

    async def reconcile(self, declared: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Make the jobs from the config file match the ``declared`` specs, by name.

        Jobs added through the API are never touched. A declared job whose
        normalised spec is unchanged keeps its schedule anchor and next slot;
        ``enabled`` is only reconciled when the config sets it. Returns the
        names added, changed and removed.

        Instances sharing a store reconcile one at a time, under the store's
        lock :data:`CONFIG_JOBS_LOCK`: each sees what the previous one left, so
        the last to reconcile (at its start or reload) wins.
        """
        async with self._store.hold_lock(CONFIG_JOBS_LOCK, wait_s=CONFIG_JOBS_LOCK_WAIT_S):
            return await self._reconcile(declared)

    async def _reconcile(self, declared: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        by_name = {j.name: j for j in await self._store.list_jobs(source=JobSource.CONFIG)}
        names = {spec.get("name") for spec in declared}
        result: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        for spec in declared:
            name = spec.get("name")
            existing = by_name.get(name) if isinstance(name, str) else None
            if existing is None:
                try:
                    await self.add(spec, source=JobSource.CONFIG)
                except NameTaken:
                    raise InvalidInput(
                        f"jobs: {name!r} is declared in the config file, but a job added "
                        "through the API has that name"
                    ) from None
                result["added"].append(str(name))
                continue
            patch = self._declared_patch(existing, spec)
            if patch:
                await self.update(existing.id, patch, source=JobSource.CONFIG, by=JobSource.CONFIG)
                result["changed"].append(existing.name)
        for job in by_name.values():
            if job.name not in names:
                await self.remove(job.id, by=JobSource.CONFIG)
                result["removed"].append(job.name)
        return result

    def _declared_patch(self, job: Job, spec: Mapping[str, Any]) -> JsonObject:
        """The patch that turns ``job`` into its declaration; empty if they agree."""
        now = self._clock.now()
        wanted = spec_to_json(
            job_from_spec(
                spec,
                job_id=job.id,
                source=JobSource.CONFIG,
                now=now,
                created_at=now,
                updated_at=now,
                trusted=True,
            )
        )
        current = spec_to_json(job)
        if "enabled" not in spec:
            wanted["enabled"] = current["enabled"]
        for body in (wanted, current):
            body["schedule"].pop("anchor")
        patch = {k: v for k, v in wanted.items() if current.get(k) != v}
        if "schedule" in patch:
            patch["schedule"] = dict(spec["schedule"])
        return patch

    async def _after_run(self, run: Run, job: Job | None) -> None:
        """A one-shot job set to be deleted after its run goes, once none of its runs is live."""
        if (
            job is not None
            and job.delete_after_run
            and job.schedule.kind is ScheduleKind.AT
            and await self._bus.publish_with(
                lambda publication: self._store.delete_idle_job(job.id, publication=publication),
                self._event(JobRemoved, job, job.source),
            )
        ):
            self._scheduler.job_removed(job.id)
            log.info("one-shot job deleted after its run", job_id=job.id, run_id=run.run_id)
