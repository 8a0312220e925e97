"""``gatewayd doctor``: check a store's run records against the invariants, offline.

It reads the store through the :class:`~gatewayd.store.base.Store` interface
(the SQLite store opened read-only), next to running daemons or without one,
and reports every violation of:

* ``running-without-process``: a run is ``running`` but its process is gone
  (or its owner's lease has lapsed and a live run has no process). Processes
  are looked at only on this host; another host's run is judged by its owner's
  lease. A run whose process ended while its owner was not alive, after writing
  its exit status, is not a violation but ``pending``: the next start records it;
* ``slot-used-twice``: two runs claim one ``(job_id, scheduled_for)`` slot;
* ``overlap-skip``: a job whose overlap is ``skip`` has more than one live run
  (queued catch-up runs, which wait their turn in line, do not count);
* ``one-ending``: a run's status, ``started_at`` and ``ended_at`` disagree, so
  it has no ending, or an ending it could not have had;
* ``job-out-of-range``: a stored job holds a value outside its field's range
  (stored by a gatewayd that did not check it); edit the field to fix it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import orjson

from gatewayd import runfiles
from gatewayd.durations import format_time
from gatewayd.errors import InvalidInput
from gatewayd.hosts import machine_id
from gatewayd.jobspec import job_from_spec
from gatewayd.model import Instance, Job, Overlap, Run, RunStatus, Trigger
from gatewayd.paths import LOCK_NAME
from gatewayd.runfiles import read_exit_status
from gatewayd.runners.processes import is_running
from gatewayd.store.base import Audit, Store
from gatewayd.store.choice import open_store
from gatewayd.store.location import StoreLocation
from gatewayd.views import spec_to_json

# A daemon may be recording a run's ending while we look: look again this much later.
RECHECK_AFTER_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    rule: str
    message: str
    run_id: str | None = None
    job_id: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "rule": self.rule,
            "run_id": self.run_id,
            "job_id": self.job_id,
            "message": self.message,
        }


def daemon_serves(state_dir: Path) -> bool:
    """Whether a daemon holds the state directory's lock."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Owners:
    """Who owns the live runs, as the store's clock judges their leases."""

    instances: dict[str, Instance]
    now: datetime
    host_id: str
    state_dir: Path
    serving: bool  # a daemon holds ``state_dir``'s lock

    def live(self, instance_id: str | None) -> bool:
        owner = self.instances.get(instance_id or "")
        if owner is None:
            return self.serving
        return owner.lives_at(self.now)

    def here(self, run: Run) -> bool:
        owner = self.instances.get(run.owner or "")
        return owner is None or owner.on_host(self.host_id)

    def files_of(self, run: Run) -> Path:
        return runfiles.state_dir_of(self.instances.get(run.owner or ""), self.state_dir)


def _process_gone(run: Run, owners: _Owners) -> bool:
    """Whether nothing carries the run on: no process where we can look, and no live owner."""
    if run.pid is not None and owners.here(run):
        return not is_running(run.pid, run.pid_start)
    return not owners.live(run.owner)


async def _running_without_process(store: Store, owners: _Owners) -> list[Violation]:
    suspects = [
        r
        for r in await store.live_runs()
        if (r.status is RunStatus.RUNNING or not owners.live(r.owner)) and _process_gone(r, owners)
    ]
    if suspects and any(owners.live(r.owner) for r in suspects):
        await anyio.sleep(RECHECK_AFTER_S)  # a wait for the owner to record, not a synchronisation
    found: list[Violation] = []
    for run in suspects:
        again = await store.get_run(run.run_id)
        if again is None or again.status.is_terminal or not _process_gone(again, owners):
            continue
        found.append(_without_process(again, owners))
    return found


def _without_process(run: Run, owners: _Owners) -> Violation:
    live_owner = owners.live(run.owner)
    if run.pid is None:
        detail = "it has no process"
    elif owners.here(run):
        detail = f"pid {run.pid} is not running"
    else:
        detail = f"its process is on host {owners.instances[run.owner or ''].host_id}"
    if not live_owner:
        detail += f" and its owner {run.owner} is not alive"
    written = read_exit_status(runfiles.exit_path(owners.files_of(run), run.job_id, run.run_id))
    if written is not None and not live_owner:
        return Violation(
            rule="pending",
            run_id=run.run_id,
            job_id=run.job_id,
            message=f"run {run.run_id} ended with status {written.status} at "
            f"{format_time(written.written_at)} while no daemon ran; the next start records it",
        )
    return Violation(
        rule="running-without-process",
        run_id=run.run_id,
        job_id=run.job_id,
        message=f"run {run.run_id} is {run.status.value}, but {detail}",
    )


def _recorded(audit: Audit) -> Iterator[Violation]:
    for slot in audit.slots_used_twice:
        yield Violation(
            rule="slot-used-twice",
            job_id=slot.job_id,
            message=f"job {slot.job_id} has {slot.runs} runs for the slot "
            f"{format_time(slot.scheduled_for)}",
        )
    for bad in audit.bad_endings:
        yield Violation(
            rule="one-ending",
            run_id=bad.run_id,
            job_id=bad.job_id,
            message=f"run {bad.run_id} ({bad.status}) {bad.problem}",
        )


def _overlap_skip(jobs: list[Job], live: list[Run]) -> Iterator[Violation]:
    skip_jobs = {job.id for job in jobs if job.overlap is Overlap.SKIP}
    holding: dict[str, list[Run]] = {}
    for run in live:
        waiting_catchup = run.status is RunStatus.QUEUED and run.trigger is Trigger.CATCHUP
        if run.job_id in skip_jobs and not waiting_catchup:
            holding.setdefault(run.job_id, []).append(run)
    for job_id, runs in holding.items():
        if len(runs) > 1:
            yield Violation(
                rule="overlap-skip",
                job_id=job_id,
                message=f"job {job_id} has overlap skip but {len(runs)} live runs: "
                + ", ".join(f"{r.run_id} ({r.status.value})" for r in runs),
            )


def _jobs_out_of_range(jobs: list[Job]) -> Iterator[Violation]:
    for job in jobs:
        try:
            job_from_spec(
                spec_to_json(job),
                job_id=job.id,
                source=job.source,
                now=None,
                created_at=job.created_at,
                updated_at=job.updated_at,
                allow_past_at=True,
            )
        except InvalidInput as exc:
            yield Violation(
                rule="job-out-of-range",
                job_id=job.id,
                message=f"job {job.id}: {exc.message}; change it with `gatewayd cron edit`",
            )


async def examine_store(store: Store, state_dir: Path, *, host_id: str) -> list[Violation]:
    """Every violation (and every ``pending`` ending) in ``store``, seen from ``host_id``,
    whose daemon (if any) keeps its files in ``state_dir``."""
    owners = _Owners(
        instances={i.instance_id: i for i in await store.instances()},
        now=await store.now(),
        host_id=host_id,
        state_dir=state_dir,
        serving=daemon_serves(state_dir),
    )
    jobs = await store.list_jobs()
    without_process = await _running_without_process(store, owners)
    return [
        *without_process,
        *_recorded(await store.audit()),
        *_overlap_skip(jobs, await store.live_runs()),
        *_jobs_out_of_range(jobs),
    ]


async def examine(location: StoreLocation, state_dir: Path) -> list[Violation]:
    """:func:`examine_store` over the store at ``location`` (a SQLite file is opened
    read-only), seen from this host and ``state_dir``."""
    store = open_store(location, read_only=True)
    await store.open()
    try:
        return await examine_store(store, state_dir, host_id=machine_id())
    finally:
        await store.close()


def violations_of(found: list[Violation]) -> list[Violation]:
    return [v for v in found if v.rule != "pending"]


def report(found: list[Violation], *, as_json: bool) -> str:
    violations = violations_of(found)
    pending = [v for v in found if v.rule == "pending"]
    if as_json:
        return orjson.dumps(
            {
                "ok": not violations,
                "violations": [v.to_json() for v in violations],
                "pending": [v.to_json() for v in pending],
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    lines = [f"{v.rule}: {v.message}" for v in found]
    if not violations:
        lines.append("no violation found")
    return "\n".join(lines)
