"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every call runs on a worker thread, so the event loop never waits for the disk:
reads on a few reader connections, writes on one writer thread that commits
them in groups (:mod:`gatewayd.store.threads`). Every state change is one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), guarded by the state it
expects; the operations themselves are in ``sqlitejobs``, ``sqliteruns``,
``sqliteevents``, ``sqliteinstances`` and ``sqliteaudit``. Several store
objects (instances) may share one file: SQLite serialises their transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from gatewayd.errors import StoreError, StoreReplaced
from gatewayd.model import (
    Instance,
    Job,
    JobSource,
    JobTiming,
    Run,
    RunCounts,
    RunOutcome,
    Session,
    StopReason,
)
from gatewayd.store import (
    sqliteaudit,
    sqliteevents,
    sqliteinstances,
    sqlitejobs,
    sqliteruns,
)
from gatewayd.store.base import (
    NOTHING,
    Audit,
    Envelope,
    EventsListener,
    HealthListener,
    Publication,
    Store,
    StoreHealth,
)
from gatewayd.store.faults import as_store_error
from gatewayd.store.schema import SCHEMA_VERSION
from gatewayd.store.sqlitefile import (
    FileWatch,
    check_file,
    connect,
    connect_read_only,
    open_file,
    rescue,
)
from gatewayd.store.threads import BatchWriter, Published
from gatewayd.store.transitions import Expected, adopted, cancel_asked, finished, started
from gatewayd.workers import WorkerPool

T = TypeVar("T")
# Reads run on up to this many connections at once (WAL lets them run beside the writer).
READERS = 4


class SQLiteStore(Store):
    """The store in ``path``, created if missing; with ``read_only``, never written to."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._readers: WorkerPool[sqlite3.Connection] | None = None
        self._writer: BatchWriter | None = None
        self._watch: FileWatch | None = None
        self._health_listeners: list[HealthListener] = []
        self._event_listeners: list[EventsListener] = []
        self._limiter = anyio.CapacityLimiter(1)

    # --- plumbing -------------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on one of the reader threads, off the event loop."""
        readers = self._readers
        if readers is None:
            raise StoreError(f"the store {self.path} is not open")
        try:
            return await readers.run(fn)
        except sqlite3.Error as exc:
            raise as_store_error(exc, self.path, "reading") from None

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        label: str = "a write",
    ) -> T:
        """Run a write in the writer's next batch; return once it is committed.

        A durable write is held through a fault of the disk until it is written;
        any other is refused with the fault (see :mod:`gatewayd.store.threads`).
        """
        writer = self._writer
        if writer is None:
            verb = "opened read-only" if self._read_only else "not open"
            raise StoreError(f"the store {self.path} is {verb}")
        return await writer.run(fn, durable=durable, label=label)

    async def _publish(
        self,
        fn: Callable[[sqlite3.Connection], Published[T]],
        *,
        durable: bool = True,
        label: str = "a write",
    ) -> T:
        """A write that also writes events: its value (the events go to the listeners)."""
        published = await self._write(fn, durable=durable, label=label)
        return published.value

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Check the file without writing to it, then open it; raise what is wrong.

        See :func:`gatewayd.store.sqlitefile.check_file` for what is checked. A
        read-only store must exist, at this gatewayd's schema version.
        """
        if self._readers is not None:
            return
        if self._read_only:
            await anyio.to_thread.run_sync(self._check_read_only, limiter=self._limiter)
            self._start_readers(partial(_read_only, self.path))
            return
        self._conn = await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        self._watch = FileWatch(self.path)
        self._writer = BatchWriter(
            self._conn, path=self.path, name=f"gatewayd.store.threads {self.path.name}"
        )
        loop = asyncio.get_running_loop()
        self._writer.watch(loop, self._health_changed)
        self._writer.watch_commits(loop, self._committed)
        self._writer.start()
        self._start_readers(partial(connect, self.path))

    def _start_readers(self, make: Callable[[], sqlite3.Connection]) -> None:
        self._readers = WorkerPool(
            make, size=READERS, name="gatewayd-store-reader", close_resource=_close
        )
        self._readers.start()

    def _open_sync(self) -> sqlite3.Connection:
        check_file(self.path)
        return open_file(self.path)

    def _check_read_only(self) -> None:
        if not self.path.exists():
            raise StoreError(f"there is no store at {self.path}")
        report = check_file(self.path)
        if report.version != SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {report.version}; this gatewayd "
                f"reads version {SCHEMA_VERSION}: start gatewayd once to migrate it"
            )

    def stats(self) -> dict[str, int]:
        writer = self._writer
        if writer is None:
            return {"commits": 0, "writes": 0}
        return {"commits": writer.batches, "writes": writer.operations}

    @property
    def health(self) -> StoreHealth:
        writer = self._writer
        return StoreHealth() if writer is None else writer.health

    def watch_health(self, listener: HealthListener) -> None:
        self._health_listeners.append(listener)

    def _health_changed(self, health: StoreHealth) -> None:
        for listener in self._health_listeners:
            listener(health)

    def watch_events(self, listener: EventsListener) -> None:
        self._event_listeners.append(listener)

    def _committed(self, envelopes: list[Envelope]) -> None:
        for listener in self._event_listeners:
            listener(envelopes)

    async def check_files(self) -> None:
        watch, writer = self._watch, self._writer
        if watch is None or writer is None or isinstance(writer.health.fault, StoreReplaced):
            return
        fault = await anyio.to_thread.run_sync(watch.replaced)
        if fault is None:
            return
        path = self.path

        def save(conn: sqlite3.Connection) -> None:
            done = rescue(conn, fault, path)
            fault.message = f"{fault.message}; {done}"

        writer.halt(fault, save)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await anyio.to_thread.run_sync(writer.stop)
        readers, self._readers = self._readers, None
        if readers is not None:
            await anyio.to_thread.run_sync(readers.stop)
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    # --- instances ------------------------------------------------------------------

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

    # --- jobs -----------------------------------------------------------------------

    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        op = partial(sqlitejobs.add, jobs=[job], publication=publication)
        await self._publish(op, durable=False, label=f"job {job.name!r}")

    async def add_jobs(self, jobs: Sequence[Job], *, publication: Publication = NOTHING) -> None:
        op = partial(sqlitejobs.add, jobs=list(jobs), publication=publication)
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

    # --- runs -----------------------------------------------------------------------

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
        def change(run: Run) -> Run:
            run = started(run, started_at=started_at, owner=owner, pid=pid, pid_start=pid_start)
            return run if outcome is None else finished(run, outcome)

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
        op = sqliteruns.transition(run_id, lambda run: cancel_asked(run, reason))
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

    async def live_runs(self, job_id: str | None = None) -> list[Run]:
        return await self._call(partial(sqliteruns.live, job_id=job_id))

    async def count_runs(self) -> RunCounts:
        return await self._call(sqliteruns.count)

    async def prune_runs(self, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
        op = partial(sqliteruns.prune, keep_per_job=keep_per_job, queued_before=queued_before)
        return await self._write(op, durable=False, label="pruning runs")

    # --- sessions and events ---------------------------------------------------------

    async def publish(self, publication: Publication) -> None:
        op = partial(sqliteevents.publish, publication=publication, value=None)
        await self._publish(op, label="events")

    async def main_session_id(self, candidate: str) -> str:
        op = partial(sqliteevents.main_session_id, candidate=candidate)
        return await self._write(op, label="the main session's id")

    async def get_session(self, key: str) -> Session | None:
        return await self._call(partial(sqliteevents.get_session, key=key))

    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        return await self._call(partial(sqliteevents.list_sessions, limit=limit, before=before))

    async def last_event_seq(self) -> int:
        return await self._call(sqliteevents.last_seq)

    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        return await self._call(partial(sqliteevents.after, seq=seq, limit=limit))

    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        return await self._call(partial(sqliteevents.latest, limit=limit))

    async def prune_events(self, *, keep: int) -> int:
        op = partial(sqliteevents.prune, keep=keep)
        return await self._write(op, durable=False, label="pruning events")

    # --- checking -------------------------------------------------------------------

    async def audit(self) -> Audit:
        return await self._call(sqliteaudit.audit)


def _read_only(path: Path) -> sqlite3.Connection:
    conn = connect_read_only(path)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _close(conn: sqlite3.Connection) -> None:
    conn.close()
