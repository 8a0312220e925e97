"""The store's threads: a group-committing writer, and a pool of readers.

Group commit: one writer thread runs write operations in batches, one fsync per batch.

Each operation runs inside its own savepoint, so it is still all or nothing on
its own; the batch's single ``COMMIT`` makes every operation in it durable at
once, and only then is each caller answered. Under load, operations that
arrive while a batch commits form the next batch, so the cost of ``fsync`` is
shared instead of paid once per state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from gatewayd.errors import StoreError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
_Item = tuple[Operation, "asyncio.Future[Any]", asyncio.AbstractEventLoop]

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


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller stopped waiting; the operation is committed all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _hand_over(
    work: queue.SimpleQueue[_Item | None], operation: Callable[[sqlite3.Connection], T]
) -> T:
    """Queue ``operation`` for a store thread; its result comes back through the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    work.put((operation, future, loop))
    return await future


class BatchWriter:
    """Runs write operations on ``conn`` in its own thread."""

    def __init__(self, conn: sqlite3.Connection, *, name: str) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        self._thread.start()

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` in the next batch; return once that batch is committed."""
        return await _hand_over(self._queue, operation)

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

    def _commit(self, batch: list[_Item]) -> None:
        conn = self._conn
        outcomes: list[tuple[_Item, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                try:
                    outcomes.append((item, item[0](conn), None))
                except Exception as exc:
                    outcomes.append((item, None, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreError(f"cannot write to the store: {exc}; nothing of it was kept")
            outcomes = [(item, None, failure) for item in batch]
        self.batches += 1
        self.operations += len(batch)
        for (_, future, loop), result, error in outcomes:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)


class ReaderPool:
    """Threads, each with its own connection, running read operations as they come.

    A read is handed over through a queue and answered through the event loop:
    cheaper than a general-purpose thread pool, and never on the event loop.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, size: int, name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name} {n}", daemon=True) for n in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    async def run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` on the next free reader."""
        return await _hand_over(self._queue, operation)

    def stop(self) -> None:
        """End the threads once the reads queued are done (blocking: call from a thread)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                operation, future, loop = item
                try:
                    result, error = operation(conn), None
                except Exception as exc:
                    result, error = None, exc
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, result, error)
        finally:
            conn.close()
