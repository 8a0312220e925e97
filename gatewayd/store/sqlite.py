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
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from gatewayd.errors import StoreError, StoreReplaced
from gatewayd.model import Session
from gatewayd.store import sqliteaudit, sqliteevents
from gatewayd.store.base import (
    Audit,
    Envelope,
    EventsListener,
    HealthListener,
    Publication,
    Store,
    StoreHealth,
)
from gatewayd.store.filelock import file_lock
from gatewayd.store.schema import SCHEMA_VERSION
from gatewayd.store.sqlitealerts import SQLiteAlerts
from gatewayd.store.sqlitefile import (
    FileWatch,
    check_file,
    connect,
    connect_read_only,
    open_file,
    rescue,
)
from gatewayd.store.sqliterecords import SQLiteInstances, SQLiteJobs, SQLiteRuns
from gatewayd.store.threads import BatchWriter
from gatewayd.workers import WorkerPool

# Reads run on up to this many connections at once (WAL lets them run beside the writer).
READERS = 4


class SQLiteStore(SQLiteInstances, SQLiteJobs, SQLiteRuns, SQLiteAlerts, Store):
    """The store in ``path``, created if missing; with ``read_only``, never written to."""

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
        self._writer.commit_timer = self._commit_timed
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

    def hold_lock(self, name: str, *, wait_s: float) -> AbstractAsyncContextManager[None]:
        """The lock is the ``flock`` of ``<store file>.<name>.lock``: the store's
        instances share its host."""
        return file_lock(self.path.with_name(f"{self.path.name}.{name}.lock"), wait_s=wait_s)

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

    def time_commits(self, listener: Callable[[float], None]) -> None:
        self._commit_timers.append(listener)

    def _commit_timed(self, seconds: float) -> None:
        for listener in self._commit_timers:
            listener(seconds)

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
