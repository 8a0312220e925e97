"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every call runs on a worker thread, one at a time, on one connection, so the
event loop never waits for the disk. Every state change is one transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``), guarded by the state it expects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson

from gatewayd.errors import (
    Conflict,
    NameTaken,
    NotFound,
    SlotTaken,
    StoreError,
    StoreReplaced,
)
from gatewayd.model import (
    ErrorKind,
    Instance,
    Job,
    JobSource,
    JobTiming,
    Leftovers,
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    Session,
    SessionStatus,
    StopReason,
    Trigger,
)
from gatewayd.store.base import NOTHING, HealthListener, Publication, Store, StoreHealth
from gatewayd.store.faults import as_store_error
from gatewayd.store.sqlitefile import FileWatch, check_file, connect, open_file, rescue
from gatewayd.store.sqlrows import Column, Table, enum_column, from_us, time_column, to_us
from gatewayd.store.threads import BatchWriter, savepoint
from gatewayd.store.transitions import adopted, finished, slot_key, started
from gatewayd.views import job_from_stored, leftovers_from_json, leftovers_to_json, spec_to_json
from gatewayd.workers import WorkerPool

T = TypeVar("T")
# Reads run on up to this many connections at once (WAL lets them run beside the writer).
READERS = 4
# The most job ids one query names (SQLite allows 32766 host parameters).
_IN_CHUNK = 500


def _leftovers_to_db(value: Leftovers | None) -> bytes | None:
    return None if value is None else orjson.dumps(leftovers_to_json(value))


def _leftovers_from_db(value: bytes | str | None) -> Leftovers | None:
    return None if value is None else leftovers_from_json(orjson.loads(value))


RUNS: Table[Run] = Table(
    "runs",
    Run,
    (
        Column("run_id"),
        Column("job_id"),
        Column("job_name"),
        enum_column("trigger", Trigger),
        enum_column("status", RunStatus),
        time_column("scheduled_for"),
        time_column("queued_at"),
        time_column("started_at"),
        time_column("ended_at"),
        Column("duration_ms"),
        Column("exit_code"),
        Column("error"),
        enum_column("error_kind", ErrorKind),
        enum_column("stop_reason", StopReason),
        Column("session_key"),
        Column("attempt"),
        Column("summary"),
        Column("output_tail"),
        Column("owner"),
        Column("pid"),
        Column("pid_start"),
        Column("leftovers", _leftovers_to_db, _leftovers_from_db),
    ),
)
# What a transition changes: everything but what a run is born with.
_RUN_CHANGES = (
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "exit_code",
    "error",
    "error_kind",
    "stop_reason",
    "summary",
    "output_tail",
    "owner",
    "pid",
    "pid_start",
    "leftovers",
)
SESSIONS: Table[Session] = Table(
    "sessions",
    Session,
    (
        Column("key"),
        Column("session_id"),
        Column("job_id"),
        Column("run_id"),
        enum_column("status", SessionStatus),
        time_column("started_at"),
        time_column("ended_at"),
        Column("runtime_ms"),
        Column("error"),
        enum_column("error_kind", ErrorKind),
        enum_column("stop_reason", StopReason),
    ),
)
RUN_COLUMNS = RUNS.names
run_from_row = RUNS.load


def _job_from_row(row: Sequence[Any]) -> Job:
    return _decode_job(tuple(row))


@functools.lru_cache(maxsize=1024)  # bounded: each cached job is objects for the GC to scan
def _decode_job(row: tuple[Any, ...]) -> Job:
    """A job from its row; rows repeat (a job is read far more than it changes)."""
    created_at, updated_at = from_us(row[4]), from_us(row[5])
    assert created_at is not None and updated_at is not None
    return job_from_stored(
        orjson.loads(row[2]),
        job_id=row[0],
        source=JobSource(row[1]),
        next_slot=from_us(row[3]),
        created_at=created_at,
        updated_at=updated_at,
    )


_JOB_COLUMNS = "id, source, spec, next_slot, created_at, updated_at"


class SQLiteStore(Store):
    """The store in ``path``, created if missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._readers: WorkerPool[sqlite3.Connection] | None = None
        self._writer: BatchWriter | None = None
        self._watch: FileWatch | None = None
        self._health_listeners: list[HealthListener] = []
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
            raise StoreError(f"the store {self.path} is not open")
        return await writer.run(fn, durable=durable, label=label)

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Check the file without writing to it, then open it; raise what is wrong.

        See :func:`gatewayd.store.sqlitefile.check_file` for what is checked.
        """
        if self._conn is not None:
            return
        self._conn = await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        self._watch = FileWatch(self.path)
        self._writer = BatchWriter(
            self._conn, path=self.path, name=f"gatewayd.store.threads {self.path.name}"
        )
        self._writer.watch(asyncio.get_running_loop(), self._health_changed)
        self._writer.start()
        self._readers = WorkerPool(
            partial(connect, self.path),
            size=READERS,
            name="gatewayd-store-reader",
            close_resource=_close,
        )
        self._readers.start()

    def _open_sync(self) -> sqlite3.Connection:
        check_file(self.path)
        return open_file(self.path)

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

    async def register_instance(self, instance: Instance) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?)",
                (
                    instance.instance_id,
                    instance.pid,
                    instance.host,
                    to_us(instance.started_at),
                    to_us(instance.heartbeat_at),
                ),
            )

        await self._write(op, durable=False, label="the instance record")

    async def heartbeat(self, instance_id: str, at: datetime) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE instances SET heartbeat_at = ? WHERE instance_id = ?",
                (to_us(at), instance_id),
            )

        await self._write(op, durable=False, label="a heartbeat")

    async def get_instance(self, instance_id: str) -> Instance | None:
        def op(conn: sqlite3.Connection) -> Instance | None:
            row = conn.execute(
                "SELECT instance_id, pid, host, started_at, heartbeat_at FROM instances "
                "WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
            if row is None:
                return None
            started_at, heartbeat_at = from_us(row[3]), from_us(row[4])
            assert started_at is not None and heartbeat_at is not None
            return Instance(
                instance_id=row[0],
                pid=row[1],
                host=row[2],
                started_at=started_at,
                heartbeat_at=heartbeat_at,
            )

        return await self._call(op)

    # --- jobs -----------------------------------------------------------------------

    @staticmethod
    def _job_values(job: Job) -> tuple[Any, ...]:
        return (
            job.name,
            job.source.value,
            orjson.dumps(spec_to_json(job)),
            to_us(job.next_slot),
            to_us(job.created_at),
            to_us(job.updated_at),
            int(job.enabled),
            job.id,
        )

    @staticmethod
    def _name_taken(conn: sqlite3.Connection, job: Job) -> NameTaken:
        row = conn.execute("SELECT id FROM jobs WHERE name = ?", (job.name,)).fetchone()
        holder = row[0] if row else "another job"
        return NameTaken(f"the name {job.name!r} is taken by job {holder}", data={"name": job.name})

    async def add_job(self, job: Job) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                raise Conflict(f"a job with id {job.id} exists")
            try:
                conn.execute(
                    "INSERT INTO jobs (name, source, spec, next_slot, created_at, "
                    "updated_at, enabled, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    self._job_values(job),
                )
            except sqlite3.IntegrityError:
                raise self._name_taken(conn, job) from None

        await self._write(op, durable=False, label=f"job {job.name!r}")

    async def add_jobs(self, jobs: Sequence[Job]) -> None:
        rows = [self._job_values(job) for job in jobs]

        def op(conn: sqlite3.Connection) -> None:
            try:
                with savepoint(conn):  # undone before the clash is looked for
                    conn.executemany(
                        "INSERT INTO jobs (name, source, spec, next_slot, created_at, "
                        "updated_at, enabled, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
            except sqlite3.IntegrityError:
                for job in jobs:
                    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                        raise Conflict(f"a job with id {job.id} exists") from None
                    holder = conn.execute(
                        "SELECT id FROM jobs WHERE name = ?", (job.name,)
                    ).fetchone()
                    if holder is not None:
                        raise NameTaken(
                            f"the name {job.name!r} is taken by job {holder[0]}",
                            data={"name": job.name},
                        ) from None
                raise

        await self._write(op, durable=False, label=f"{len(jobs)} jobs")

    async def update_job(self, job: Job) -> None:
        def op(conn: sqlite3.Connection) -> None:
            try:
                cursor = conn.execute(
                    "UPDATE jobs SET name = ?, source = ?, spec = ?, next_slot = ?, "
                    "created_at = ?, updated_at = ?, enabled = ? WHERE id = ?",
                    self._job_values(job),
                )
            except sqlite3.IntegrityError:
                raise self._name_taken(conn, job) from None
            if cursor.rowcount == 0:
                raise NotFound(f"no job with id {job.id}")

        await self._write(op, durable=False, label=f"job {job.name!r}")

    async def delete_job(self, job_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise NotFound(f"no job with id {job_id}")

        await self._write(op, durable=False, label=f"removing job {job_id}")

    async def delete_idle_job(self, job_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM runs "
                "WHERE job_id = ? AND status IN ('queued', 'running'))",
                (job_id, job_id),
            )
            return cursor.rowcount > 0

        return await self._write(op, label=f"removing one-shot job {job_id}")

    async def get_job(self, job_id: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            return _job_from_row(row) if row else None

        return await self._call(op)

    async def find_job(self, ref: str) -> Job | None:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ? "
                f"UNION ALL SELECT {_JOB_COLUMNS} FROM jobs WHERE name = ? LIMIT 1",
                (ref, ref),
            ).fetchone()
            return _job_from_row(row) if row else None

        return await self._call(op)

    async def count_jobs(self) -> tuple[int, int]:
        def op(conn: sqlite3.Connection) -> tuple[int, int]:
            total, enabled = conn.execute(
                "SELECT count(*), coalesce(sum(enabled), 0) FROM jobs"
            ).fetchone()
            return int(total), int(enabled)

        return await self._call(op)

    async def list_jobs(
        self,
        *,
        source: JobSource | None = None,
        enabled_only: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        where = ["1"]
        params: list[Any] = []
        if source is not None:
            where.append("source = ?")
            params.append(source.value)
        if enabled_only:
            where.append("enabled = 1")
        if after is not None:
            where.append("name > ?")
            params.append(after)
        params.append(-1 if limit is None else limit)
        query = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY name LIMIT ?"

        def op(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(query, params).fetchall()
            return [_decode_job.__wrapped__(r) for r in rows]  # all at once: skip the cache

        return await self._call(op)

    async def job_timings(self) -> list[JobTiming]:
        def op(conn: sqlite3.Connection) -> list[JobTiming]:
            rows = conn.execute(
                "SELECT id, next_slot, enabled, "
                "json_extract(spec, '$.stagger_s'), json_extract(spec, '$.schedule.kind') "
                "FROM jobs"
            ).fetchall()
            return [
                JobTiming(
                    job_id=job_id,
                    next_slot=from_us(slot),
                    enabled=bool(enabled),
                    stagger_s=float(stagger or 0),
                    one_shot=kind == "at",
                )
                for job_id, slot, enabled, stagger, kind in rows
            ]

        return await self._call(op)

    async def record_runs(
        self,
        runs: Sequence[Run],
        *,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
        publication: Publication = NOTHING,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for run in runs:
                try:
                    conn.execute(
                        f"INSERT INTO runs ({RUNS.names}) VALUES ({RUNS.marks})",
                        RUNS.values(run),
                    )
                except sqlite3.IntegrityError:
                    key = slot_key(run)
                    if (
                        key is not None
                        and conn.execute(
                            "SELECT 1 FROM runs WHERE job_id = ? AND scheduled_for = ? "
                            "AND trigger != 'retry'",
                            (key[0], to_us(key[1])),
                        ).fetchone()
                    ):
                        raise SlotTaken(
                            f"job {run.job_id} already has a run for slot {key[1]}"
                        ) from None
                    raise Conflict(f"a run with id {run.run_id} exists") from None
            if advance_job is not None:
                cursor = conn.execute(
                    "UPDATE jobs SET next_slot = ? WHERE id = ?",
                    (to_us(next_slot), advance_job),
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"no job with id {advance_job}")
            _publish(conn, publication)

        await self._write(op, label=", ".join(f"run {r.run_id} queued" for r in runs[:5]))

    @staticmethod
    def _load_run(conn: sqlite3.Connection, run_id: str) -> Run:
        row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run with id {run_id}")
        return run_from_row(row)

    def _transition(
        self, run_id: str, change: Callable[[Run], Run], publication: Publication = NOTHING
    ) -> Callable[[sqlite3.Connection], Run]:
        def op(conn: sqlite3.Connection) -> Run:
            run = change(self._load_run(conn, run_id))
            conn.execute(
                f"UPDATE runs SET {RUNS.assignments(_RUN_CHANGES)} WHERE run_id = ?",
                (*RUNS.values_of(run, _RUN_CHANGES), run_id),
            )
            _publish(conn, publication)
            return run

        return op

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

        return await self._write(
            self._transition(run_id, change, publication), label=f"run {run_id} started"
        )

    async def adopt_run(self, run_id: str, *, from_owner: str | None, to_owner: str) -> Run:
        return await self._write(
            self._transition(
                run_id, lambda run: adopted(run, from_owner=from_owner, to_owner=to_owner)
            ),
            label=f"run {run_id} adopted",
        )

    async def finish_run(
        self, run_id: str, outcome: RunOutcome, *, publication: Publication = NOTHING
    ) -> Run:
        return await self._write(
            self._transition(run_id, lambda run: finished(run, outcome), publication),
            label=f"run {run_id} ended {outcome.status.value}",
        )

    async def get_run(self, run_id: str) -> Run | None:
        def op(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return run_from_row(row) if row else None

        return await self._call(op)

    async def list_runs(self, job_id: str, *, limit: int, before: str | None = None) -> list[Run]:
        def op(conn: sqlite3.Connection) -> list[Run]:
            below = None
            if before is not None:
                found = conn.execute("SELECT seq FROM runs WHERE run_id = ?", (before,)).fetchone()
                if found is None:
                    raise NotFound(f"no run with id {before!r}")
                below = found[0]
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?",
                (job_id, (1 << 63) - 1 if below is None else below, limit),
            ).fetchall()
            return [run_from_row(r) for r in rows]

        return await self._call(op)

    async def latest_runs(self, job_ids: Sequence[str] | None = None) -> dict[str, Run]:
        def op(conn: sqlite3.Connection) -> dict[str, Run]:
            if job_ids is None:
                rows = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE seq IN "
                    "(SELECT max(seq) FROM runs GROUP BY job_id)"
                ).fetchall()
            else:
                rows = []
                ids = list(job_ids)
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    rows += conn.execute(
                        f"SELECT {RUN_COLUMNS} FROM runs WHERE seq IN (SELECT max(seq) FROM runs "
                        f"WHERE job_id IN ({marks}) GROUP BY job_id)",
                        chunk,
                    ).fetchall()
            return {r[1]: run_from_row(r) for r in rows}

        return await self._call(op)

    async def previous_started_run(self, job_id: str, before_run_id: str) -> Run | None:
        def op(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ? AND started_at IS NOT NULL "
                "AND seq < coalesce((SELECT seq FROM runs WHERE run_id = ?), 0) "
                "ORDER BY seq DESC LIMIT 1",
                (job_id, before_run_id),
            ).fetchone()
            return run_from_row(row) if row else None

        return await self._call(op)

    async def live_runs(self, job_id: str | None = None) -> list[Run]:
        def op(conn: sqlite3.Connection) -> list[Run]:
            query = f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('queued', 'running')"
            params: tuple[str, ...] = ()
            if job_id is not None:
                query += " AND job_id = ?"
                params = (job_id,)
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
            return [run_from_row(r) for r in rows]

        return await self._call(op)

    async def count_runs(self) -> RunCounts:
        def op(conn: sqlite3.Connection) -> RunCounts:
            rows = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
            return RunCounts(by_status=tuple(sorted((RunStatus(s), n) for s, n in rows)))

        return await self._call(op)

    async def prune_runs(self, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
        def op(conn: sqlite3.Connection) -> list[Run]:
            ended = "status NOT IN ('queued', 'running')"
            doomed = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE queued_at < ? AND {ended}",
                (to_us(queued_before),),
            ).fetchall()
            crowded = conn.execute(
                "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > ?",
                (keep_per_job,),
            ).fetchall()
            for (job_id,) in crowded:
                doomed += conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ? AND {ended} AND "
                    "seq < (SELECT seq FROM runs WHERE job_id = ? ORDER BY seq DESC "
                    "LIMIT 1 OFFSET ?) AND queued_at >= ?",
                    (job_id, job_id, keep_per_job - 1, to_us(queued_before)),
                ).fetchall()
            gone = [(r[0],) for r in doomed]
            conn.executemany("DELETE FROM runs WHERE run_id = ?", gone)
            conn.executemany("DELETE FROM sessions WHERE run_id = ? AND key != 'main'", gone)
            return [run_from_row(r) for r in doomed]

        return await self._write(op, durable=False, label="pruning runs")

    # --- sessions and events ---------------------------------------------------------

    async def publish(self, publication: Publication) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _publish(conn, publication)

        await self._write(op, label="events")

    async def get_session(self, key: str) -> Session | None:
        def op(conn: sqlite3.Connection) -> Session | None:
            row = conn.execute(
                f"SELECT {SESSIONS.names} FROM sessions WHERE key = ?", (key,)
            ).fetchone()
            return SESSIONS.load(row) if row else None

        return await self._call(op)

    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        columns = f"SELECT {SESSIONS.names} FROM sessions"
        # Started sessions by (started_at, key) descending, then those without a start.
        started = f"{columns} WHERE started_at IS NOT NULL ORDER BY started_at DESC, key DESC"
        unstarted = f"{columns} WHERE started_at IS NULL ORDER BY key DESC"

        def op(conn: sqlite3.Connection) -> list[Session]:
            if before is None:
                rows = conn.execute(f"{started} LIMIT ?", (limit,)).fetchall()
                rows += conn.execute(f"{unstarted} LIMIT ?", (limit - len(rows),)).fetchall()
                return [SESSIONS.load(r) for r in rows]
            cursor = conn.execute(
                "SELECT started_at, key FROM sessions WHERE key = ?", (before,)
            ).fetchone()
            if cursor is None:
                raise NotFound(f"no session with key {before!r}")
            rows = []
            if cursor[0] is not None:
                rows = conn.execute(
                    f"{columns} WHERE started_at IS NOT NULL AND (started_at, key) < (?, ?) "
                    "ORDER BY started_at DESC, key DESC LIMIT ?",
                    (cursor[0], cursor[1], limit),
                ).fetchall()
                rows += conn.execute(f"{unstarted} LIMIT ?", (limit - len(rows),)).fetchall()
            else:
                rows = conn.execute(
                    f"{columns} WHERE started_at IS NULL AND key < ? ORDER BY key DESC LIMIT ?",
                    (before, limit),
                ).fetchall()
            return [SESSIONS.load(r) for r in rows]

        return await self._call(op)

    async def last_event_seq(self) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            return int(row[0]) if row else 0

        return await self._call(op)

    @staticmethod
    def _events(rows: list[Any]) -> list[dict[str, Any]]:
        return [{"seq": seq, **orjson.loads(body)} for seq, body in rows]

    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
            return self._events(rows)

        return await self._call(op)

    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT seq, body FROM events ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return self._events(rows[::-1])

        return await self._call(op)

    async def prune_events(self, *, keep: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM events WHERE seq <= "
                "(SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (keep,),
            )
            return cursor.rowcount

        return await self._write(op, durable=False, label="pruning events")


# An ending keeps the start its row has; its runtime is derived from it.
_SESSION_ENDING = (
    "ON CONFLICT (key) DO UPDATE SET session_id = excluded.session_id, "
    "job_id = excluded.job_id, run_id = excluded.run_id, "
    "status = excluded.status, ended_at = excluded.ended_at, "
    "runtime_ms = CASE WHEN sessions.started_at IS NULL THEN NULL "
    "ELSE max(0, (excluded.ended_at - sessions.started_at + 500) / 1000) END, "
    "error = excluded.error, error_kind = excluded.error_kind, "
    "stop_reason = excluded.stop_reason"
)


def _publish(conn: sqlite3.Connection, publication: Publication) -> None:
    """Write ``publication`` inside the caller's transaction (see ``Store.publish``)."""
    for session in publication.rows():
        insert = f"INSERT INTO sessions ({SESSIONS.names}) VALUES ({SESSIONS.marks})"
        if publication.replaces(session):
            conn.execute(insert.replace("INSERT", "INSERT OR REPLACE", 1), SESSIONS.values(session))
        else:
            ending = dataclasses.replace(session, started_at=None, runtime_ms=None)
            conn.execute(f"{insert} {_SESSION_ENDING}", SESSIONS.values(ending))
    if publication.events:
        try:
            conn.executemany(
                "INSERT INTO events (seq, body) VALUES (?, ?)",
                [(seq, orjson.dumps(body)) for seq, body in publication.events],
            )
        except sqlite3.IntegrityError:
            seqs = ", ".join(str(seq) for seq, _ in publication.events)
            raise Conflict(f"an event with one of the seqs {seqs} exists") from None


def _close(conn: sqlite3.Connection) -> None:
    conn.close()
