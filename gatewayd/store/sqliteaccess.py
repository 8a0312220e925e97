"""The SQLite store's connections, and how its parts read and write through them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from gatewayd.errors import StoreError
from gatewayd.store.base import EventsListener, HealthListener
from gatewayd.store.faults import as_store_error
from gatewayd.store.sqlitefile import FileWatch
from gatewayd.store.threads import BatchWriter, Published
from gatewayd.workers import WorkerPool

T = TypeVar("T")


class SQLiteAccess:
    """Reads on a pool of reader connections; writes through the one writer thread."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._readers: WorkerPool[sqlite3.Connection] | None = None
        self._writer: BatchWriter | None = None
        self._watch: FileWatch | None = None
        self._health_listeners: list[HealthListener] = []
        self._event_listeners: list[EventsListener] = []
        self._commit_timers: list[Callable[[float], None]] = []
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
