"""The operations users and scripts call, whatever the transport.

The RPC server maps JSON-RPC methods onto :class:`Gateway`. Every change is
written to the store first and then told to the scheduler; reads never change
anything (I8).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import structlog

from gatewayd import __version__, bounds
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.codec import JsonObject, job_to_json, run_to_json, spec_to_json
from gatewayd.durations import format_time
from gatewayd.errors import InvalidInput, NameTaken, NotFound
from gatewayd.ids import new_job_id
from gatewayd.jobspec import job_from_spec, patched_spec
from gatewayd.logs import dropped_lines
from gatewayd.model import (
    MAIN_SESSION_KEY,
    AgentTurnPayload,
    Job,
    JobSource,
    Run,
    RunStatus,
    ScheduleKind,
)
from gatewayd.planning import first_slot
from gatewayd.runs import STOP_CANCELLED, STOP_JOB_REMOVED, RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.sessions import inbox_path, session_to_json, tail_jsonl, transcript_path
from gatewayd.store.base import Store, StoreHealth
from gatewayd.store.transitions import nothing_to_cancel

log = structlog.get_logger("gatewayd.api")

# Job lists longer than this are shaped into JSON on a worker thread.
VIEWS_ON_LOOP = 200
MAX_BATCH_JOBS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Facts about this daemon shown by ``gateway.status``."""

    instance_id: str
    pid: int
    host: str
    state_dir: Path
    socket_path: Path
    started_at: datetime


def host_name() -> str:
    return socket.gethostname()


class Gateway:
    """Jobs and runs, as the CLI and the RPC see them."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        scheduler: Scheduler,
        identity: Identity,
        bus: Bus,
        agents: frozenset[str] | None = None,
    ) -> None:
        self._bus = bus
        self._agents = agents
        self._store = store
        self._clock = clock
        self._pipeline = pipeline
        self._scheduler = scheduler
        self.identity = identity
        self._fault_since: datetime | None = None
        pipeline.add_finished_listener(self._after_run)
        store.watch_health(self._health_changed)

    def _health_changed(self, health: StoreHealth) -> None:
        if health.writable:
            self._fault_since = None
        elif self._fault_since is None:
            self._fault_since = self._clock.now()

    def store_health(self) -> JsonObject:
        """The store's health: writable, or the fault (since when) and the writes it holds."""
        health = self._store.health
        fault = health.fault
        return {
            "writable": health.writable,
            "fault": None
            if fault is None
            else {
                "kind": fault.kind,
                "message": fault.message,
                "since": format_time(self._fault_since),
            },
            "held_writes": health.held,
        }

    # --- looking things up ----------------------------------------------------------

    async def job(self, ref: str) -> Job:
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("job: expected a job id or name")
        job = await self._store.find_job(ref)
        if job is None:
            raise NotFound(f"no job with id or name {ref!r}")
        return job

    async def run(self, run_id: str) -> Run:
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    async def _views(self, jobs: Sequence[Job]) -> list[JsonObject]:
        latest = await self._store.latest_runs(None if len(jobs) > 50 else [j.id for j in jobs])
        running: dict[str, str] = {}
        for run in await self._store.live_runs():
            if run.status is RunStatus.RUNNING:
                running.setdefault(run.job_id, run.run_id)

        def build() -> list[JsonObject]:
            return [
                job_to_json(job, running_run_id=running.get(job.id), last_run=latest.get(job.id))
                for job in jobs
            ]

        if len(jobs) <= VIEWS_ON_LOOP:
            return build()
        # Many jobs: shape them off the event loop, so that the timer keeps time.
        return await anyio.to_thread.run_sync(build)

    async def job_view(self, job: Job) -> JsonObject:
        return (await self._views([job]))[0]

    async def list_jobs(
        self,
        *,
        include_disabled: bool,
        limit: int = bounds.JOB_PAGE.default,
        after: str | None = None,
    ) -> list[JsonObject]:
        """A page of jobs by name: up to ``limit`` whose names sort after ``after``."""
        bounds.JOB_PAGE.check(limit)
        jobs = await self._store.list_jobs(
            enabled_only=not include_disabled, after=after, limit=limit
        )
        return await self._views(jobs)

    async def runs(self, ref: str, *, limit: int, before: str | None = None) -> list[JsonObject]:
        """A page of a job's runs, newest first: up to ``limit`` older than run ``before``."""
        bounds.RUN_PAGE.check(limit)
        job_id = await self._job_id_for_history(ref)
        runs = await self._store.list_runs(job_id, limit=limit, before=before)
        return [run_to_json(r) for r in runs]

    async def _job_id_for_history(self, ref: str) -> str:
        """A job's id; for a deleted job, its id as recorded by its runs."""
        job = await self._store.find_job(ref)
        if job is not None:
            return job.id
        if await self._store.list_runs(ref, limit=1):
            return ref
        raise NotFound(f"no job with id or name {ref!r}")

    async def last_run(self, ref: str) -> JsonObject | None:
        job_id = await self._job_id_for_history(ref)
        latest = await self._store.latest_runs([job_id])
        run = latest.get(job_id)
        return run_to_json(run) if run else None

    async def status(self) -> JsonObject:
        total_jobs, enabled_jobs = await self._store.count_jobs()
        counts = await self._store.count_runs()
        ident = self.identity
        return {
            "version": __version__,
            "instance_id": ident.instance_id,
            "pid": ident.pid,
            "host": ident.host,
            "state_dir": str(ident.state_dir),
            "socket": str(ident.socket_path),
            "started_at": format_time(ident.started_at),
            "now": format_time(self._clock.now()),
            "jobs": {"total": total_jobs, "enabled": enabled_jobs},
            "runs": {
                "total": counts.total,
                "by_status": {s.value: n for s, n in counts.by_status},
                "active": self._pipeline.active_count,
            },
            "next_wake_at": format_time(self._scheduler.next_wake_at),
            "event_subscribers": self._bus.subscribers,
            "store": {**self._store.stats(), **self.store_health()},
            "log_lines_dropped": dropped_lines(),
        }

    async def probe_lag(self, seconds: float) -> JsonObject:
        """Measure the event loop's lag for ``seconds``: how late 1 ms timers fire."""
        lags: list[float] = []
        with anyio.move_on_after(seconds):
            while True:
                before = self._clock.monotonic()
                await anyio.sleep(0.001)
                lags.append((self._clock.monotonic() - before - 0.001) * 1000)
        lags.sort()
        if not lags:
            return {"samples": 0}
        return {
            "samples": len(lags),
            "p50_ms": lags[len(lags) // 2],
            "p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            "max_ms": lags[-1],
        }

    # --- changing jobs --------------------------------------------------------------

    def _check_agent(self, job: Job) -> None:
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

    async def add_job(self, spec: Any, *, source: JobSource = JobSource.API) -> Job:
        self._store.check_writable()
        now = self._clock.now()
        job = job_from_spec(
            spec,
            job_id=new_job_id(),
            source=source,
            now=now,
            created_at=now,
            updated_at=now,
        )
        self._check_agent(job)
        job = dataclasses.replace(job, next_slot=first_slot(job, now))
        await self._store.add_job(job)
        self._scheduler.job_changed(job)
        log.info("job added", job_id=job.id, name=job.name, source=source.value)
        return job

    async def add_jobs(self, specs: Any) -> list[Job]:
        """Add many jobs at once: every spec is checked first, then all are stored in one
        transaction; any problem refuses them all, naming the spec's index."""
        if not isinstance(specs, list) or not specs:
            raise InvalidInput("jobs: expected a non-empty list of job specs")
        if len(specs) > MAX_BATCH_JOBS:
            raise InvalidInput(f"jobs: at most {MAX_BATCH_JOBS} jobs at once, got {len(specs)}")
        self._store.check_writable()
        now = self._clock.now()
        jobs: list[Job] = []
        names: dict[str, int] = {}
        for index, spec in enumerate(specs):
            try:
                job = job_from_spec(
                    spec,
                    job_id=new_job_id(),
                    source=JobSource.API,
                    now=now,
                    created_at=now,
                    updated_at=now,
                )
                self._check_agent(job)
            except InvalidInput as exc:
                raise InvalidInput(f"jobs[{index}]: {exc.message}") from None
            if job.name in names:
                raise InvalidInput(f"jobs[{index}]: the name {job.name!r} is given twice")
            names[job.name] = index
            jobs.append(dataclasses.replace(job, next_slot=first_slot(job, now)))
        try:
            await self._store.add_jobs(jobs)
        except NameTaken as exc:
            taken = names.get(exc.data.get("name", ""))
            prefix = "" if taken is None else f"jobs[{taken}]: "
            raise NameTaken(f"{prefix}{exc.message}; no job was added", data=exc.data) from None
        for job in jobs:
            self._scheduler.job_changed(job)
        log.info("jobs added", count=len(jobs))
        return jobs

    async def update_job(self, ref: str, patch: Any, *, source: JobSource | None = None) -> Job:
        self._store.check_writable()
        current = await self.job(ref)
        if source is None and current.source is JobSource.CONFIG:
            raise InvalidInput(
                f"job {current.name!r} is declared in the config file; change it there"
            )
        async with self._pipeline.job_lock(current.id):
            current = await self.job(current.id)
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
            self._check_agent(job)
            if (
                schedule_changed
                or (job.enabled and not current.enabled)
                or (job.stagger_s != current.stagger_s and job.next_slot is not None)
            ):
                job = dataclasses.replace(job, next_slot=first_slot(job, now))
            await self._store.update_job(job)
        self._scheduler.job_changed(job)
        log.info("job updated", job_id=job.id, name=job.name)
        return job

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        job = await self.job(ref)
        if job.enabled == enabled:
            return job
        return await self.update_job(job.id, {"enabled": enabled}, source=job.source)

    async def remove_job(self, ref: str, *, allow_config: bool = False) -> Job:
        self._store.check_writable()
        job = await self.job(ref)
        if job.source is JobSource.CONFIG and not allow_config:
            raise InvalidInput(f"job {job.name!r} is declared in the config file; remove it there")
        async with self._pipeline.job_lock(job.id):
            await self._store.delete_job(job.id)
        self._scheduler.job_removed(job.id)
        for run in await self._store.live_runs(job.id):
            await self._pipeline.cancel(run.run_id, reason=STOP_JOB_REMOVED)
        log.info("job removed", job_id=job.id, name=job.name)
        return job

    async def reconcile(self, declared: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Make the jobs from the config file match the ``declared`` specs, by name.

        Jobs added through the API are never touched. A declared job whose
        normalised spec is unchanged keeps its schedule anchor and next slot;
        ``enabled`` is only reconciled when the config sets it. Returns the
        names added, changed and removed.
        """
        by_name = {j.name: j for j in await self._store.list_jobs(source=JobSource.CONFIG)}
        names = {spec.get("name") for spec in declared}
        result: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        for spec in declared:
            name = spec.get("name")
            existing = by_name.get(name) if isinstance(name, str) else None
            if existing is None:
                try:
                    await self.add_job(spec, source=JobSource.CONFIG)
                except NameTaken:
                    raise InvalidInput(
                        f"jobs: {name!r} is declared in the config file, but a job added "
                        "through the API has that name"
                    ) from None
                result["added"].append(str(name))
                continue
            patch = self._declared_patch(existing, spec)
            if patch:
                await self.update_job(existing.id, patch, source=JobSource.CONFIG)
                result["changed"].append(existing.name)
        for job in by_name.values():
            if job.name not in names:
                await self.remove_job(job.id, allow_config=True)
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

    # --- runs -----------------------------------------------------------------------

    async def run_job(self, ref: str, *, due: bool) -> JsonObject:
        job = await self.job(ref)
        self._store.check_writable()
        if due:
            runs = await self._scheduler.fire(job.id)
            started = [r for r in runs if r.status is RunStatus.QUEUED]
            if not runs:
                return {"ok": True, "ran": False, "reason": "not-due"}
            if not started:
                live = await self._store.live_runs(job.id)
                return _refused(live[0] if live else runs[-1])
            return {"ok": True, "ran": True, "run_id": started[-1].run_id}
        submitted = await self._pipeline.submit_manual(job)
        if not submitted.ran:
            return _refused(submitted.run)
        return {"ok": True, "ran": True, "run_id": submitted.run.run_id}

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
            job = await self.job(ref)
            targets = await self._store.live_runs(job.id)
            if not targets:
                raise NotFound(f"job {job.name!r} has no queued or running run to cancel")
        if not self._store.health.writable:
            for target in targets:
                if target.status.is_terminal:
                    raise nothing_to_cancel(target)
                if not self._pipeline.request_stop(target.run_id, reason=STOP_CANCELLED):
                    self._store.check_writable()  # not ours to stop: its ending needs a write
            return targets
        return [await self._pipeline.cancel(r.run_id, reason=STOP_CANCELLED) for r in targets]

    async def wait_run(self, run_id: str, *, timeout_s: float | None) -> Run:
        """The run once it has ended, or as it is after ``timeout_s``; ``NotFound`` if unknown."""
        ended = self._pipeline.recent_ending(run_id)
        if ended is not None:
            return ended
        with anyio.move_on_after(timeout_s):
            return await self._pipeline.wait(run_id)
        return await self.run(run_id)

    # --- sessions and events --------------------------------------------------------

    async def sessions(self, *, limit: int, before: str | None = None) -> list[JsonObject]:
        bounds.SESSION_PAGE.check(limit)
        found = await self._store.list_sessions(limit=limit, before=before)
        return [session_to_json(s) for s in found]

    async def session(self, key: str) -> JsonObject:
        """A session with the tails of its transcript (and, for ``main``, of its inbox)."""
        session = await self._store.get_session(key)
        state_dir = self.identity.state_dir
        if session is None and key != MAIN_SESSION_KEY:
            raise NotFound(f"no session with key {key!r}")
        body: JsonObject = (
            session_to_json(session)
            if session is not None
            else {"key": key, "session_id": None, "status": None}
        )
        body["transcript_tail"] = await anyio.to_thread.run_sync(
            tail_jsonl, transcript_path(state_dir, key)
        )
        if key == MAIN_SESSION_KEY:
            body["inbox_tail"] = await anyio.to_thread.run_sync(tail_jsonl, inbox_path(state_dir))
        return body

    async def events(
        self,
        send: Callable[[JsonObject], Awaitable[None]],
        *,
        since: int | None,
        limit: int,
        follow: bool,
    ) -> JsonObject:
        """Send the event history (after ``since``, or the last ``limit``), then live events.

        Live events come from a bounded subscription: a reader too slow to keep up
        gets a gap marker, and the stream ends.
        """
        last = since or 0
        with self._bus.subscribe() as subscription:
            if since is None:
                history = await self._store.latest_events(limit=limit)
            else:
                history = await self._store.events_after(since, limit=limit)
            for envelope in history:
                await send(envelope)
                last = envelope["seq"]
            if not follow:
                return {"last_seq": last, "follow": False}
            async for envelope in subscription:
                seq = envelope.get("seq")
                if seq is not None and seq <= last:
                    continue
                await send(envelope)
                last = seq if seq is not None else last
            return {"last_seq": last, "follow": True, "dropped": subscription.dropped}

    async def _after_run(self, run: Run, job: Job | None) -> None:
        if (
            job is not None
            and job.delete_after_run
            and job.schedule.kind is ScheduleKind.AT
            and await self._store.delete_idle_job(job.id)
        ):
            self._scheduler.job_removed(job.id)
            log.info("one-shot job deleted after its run", job_id=job.id, run_id=run.run_id)


def _refused(live: Run) -> JsonObject:
    return {
        "ok": True,
        "ran": False,
        "reason": "already-running",
        "run_id": live.run_id,
        "running_since": format_time(live.started_at or live.queued_at),
    }
