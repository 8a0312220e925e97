"""The store's writer thread, which commits in groups (readers are a ``WorkerPool``).

Group commit: one writer thread runs write operations in batches, one fsync per batch.

Each operation is still all or nothing on its own: the batch runs in one
transaction, and if an operation raises part way, the batch is undone and run
again with each operation in a savepoint of its own (operations only read and
write the database, so running one again is safe). The batch's single
``COMMIT`` makes every operation in it durable at once, and only then is each
caller answered. Under load, operations that
arrive while a batch commits form the next batch, so the cost of ``fsync`` is
shared instead of paid once per state change.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gatewayd.errors import StoreError
from gatewayd.workers import Item, answer, hand_over

T = TypeVar("T")

# The most operations one transaction holds, so that one batch cannot starve the reader.
MAX_BATCH = 512


@contextlib.contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One operation's own atomic unit inside the batch's transaction."""
    conn.execute("SAVEPOINT op")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        raise
    conn.execute("RELEASE op")


class BatchWriter:
    """Runs write operations on ``conn`` in its own thread."""

    def __init__(self, conn: sqlite3.Connection, *, name: str) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        self._thread.start()

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` in the next batch; return once that batch is committed."""
        return await hand_over(self._queue, operation)

    def stop(self) -> None:
        """Finish what is queued, then end the thread (blocking: call it from a thread)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[Item]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = _run_all(conn, batch)
            if outcomes is None:
                # An operation failed part way: undo the batch, then run each
                # operation in a savepoint of its own, so that it fails alone.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = [_run_alone(conn, item) for item in batch]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreError(f"cannot write to the store: {exc}; nothing of it was kept")
            outcomes = [(item, None, failure) for item in batch]
        self.batches += 1
        self.operations += len(batch)
        for (_, future, loop), result, error in outcomes:
            answer(loop, future, result, error)


Outcome = tuple[Item, Any, BaseException | None]


def _run_all(conn: sqlite3.Connection, batch: list[Item]) -> list[Outcome] | None:
    """Every operation's result, or ``None`` as soon as one of them raises."""
    outcomes: list[Outcome] = []
    for item in batch:
        try:
            outcomes.append((item, item[0](conn), None))
        except Exception:
            return None
    return outcomes


def _run_alone(conn: sqlite3.Connection, item: Item) -> Outcome:
    try:
        with savepoint(conn):
            return (item, item[0](conn), None)
    except Exception as exc:
        return (item, None, exc)
