"""The store's writer thread, which commits in groups (readers are a ``WorkerPool``).

Group commit: one writer thread runs write operations in batches, one fsync per batch.

Each operation is still all or nothing on its own: the batch runs in one
transaction, and if an operation raises part way, the batch is undone and run
again with each operation in a savepoint of its own (operations only read and
write the database, so running one again is safe). The batch's single
``COMMIT`` makes every operation in it durable at once, and only then is each
caller answered. Under load, operations that arrive while a batch commits form
the next batch, so the cost of ``fsync`` is shared instead of paid once per
state change.

When the disk or the files fail (no space, read-only, an I/O error), nothing is
lost and nothing raises into the daemon: *durable* operations (the record of
what runs did) are held, in order, and written as soon as a retry succeeds;
the others (what a user asked for) are refused at once with the fault. The
writer retries by itself, with a backoff of at most ``MAX_RETRY_S``. A damaged
or replaced store is never written again: its durable operations are held
until the daemon stops, when they are given up and named in the log.

An operation that writes events returns them as :class:`Published`; once its
batch is committed, the events go to the commit watcher before any caller is
answered, in commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog

from gatewayd.errors import StoreError
from gatewayd.store.base import Envelope, StoreHealth
from gatewayd.store.faults import fault_of, is_outage
from gatewayd.workers import answer, forget_frames

T = TypeVar("T")
log = structlog.get_logger("gatewayd.store")

# The most operations one transaction holds, so that one batch cannot starve the reader.
MAX_BATCH = 512
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 1.0


@contextlib.contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One operation's own atomic unit inside the batch's transaction."""
    conn.execute("SAVEPOINT op")
    try:
        yield conn
    except BaseException:
        # A full disk or an I/O error makes SQLite undo the whole transaction itself:
        # then there is no savepoint left to go back to, and the fault is what to raise.
        if conn.in_transaction:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        raise
    conn.execute("RELEASE op")


@dataclass(frozen=True, slots=True)
class Published(Generic[T]):
    """An operation's value, with the events it wrote (as stored, with their seqs)."""

    value: T
    envelopes: list[Envelope]


@dataclass(slots=True, kw_only=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool
    label: str


@dataclass(slots=True, kw_only=True)
class _Halt:
    """Stop writing for good, after ``last`` (run outside any transaction)."""

    fault: StoreError
    last: Callable[[sqlite3.Connection], None] | None = None


@dataclass(slots=True)
class _Held:
    ops: list[_Op] = field(default_factory=list)


_Item = _Op | _Halt | None
Outcome = tuple[_Op, Any, BaseException | None]


class BatchWriter:
    """Runs write operations on ``conn`` in its own thread; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, *, path: Path, name: str) -> None:
        self._conn = conn
        self._path = path
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = threading.Event()
        self._health = StoreHealth()
        self._listener: tuple[asyncio.AbstractEventLoop, Callable[[StoreHealth], None]] | None
        self._listener = None
        self._committed: tuple[asyncio.AbstractEventLoop, Callable[[list[Envelope]], None]] | None
        self._committed = None
        self.batches = 0
        self.operations = 0
        # Told, on the writer's thread, how long each commit took (seconds).
        self.commit_timer: Callable[[float], None] | None = None

    @property
    def health(self) -> StoreHealth:
        return self._health

    def watch(
        self, loop: asyncio.AbstractEventLoop, listener: Callable[[StoreHealth], None]
    ) -> None:
        self._listener = (loop, listener)

    def watch_commits(
        self, loop: asyncio.AbstractEventLoop, listener: Callable[[list[Envelope]], None]
    ) -> None:
        """Give ``listener`` (on ``loop``) the events of each committed batch, in order."""
        self._committed = (loop, listener)

    def start(self) -> None:
        self._thread.start()

    async def run(
        self,
        operation: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        label: str = "a write",
    ) -> T:
        """Run ``operation`` in the next batch; return once that batch is committed.

        A durable operation is held through a fault until it is written; any
        other is refused with the fault while one lasts.
        """
        if not durable:
            refusal = self._health.refusal()
            if refusal is not None:
                raise refusal
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn=operation, future=future, loop=loop, durable=durable, label=label))
        return await future

    def halt(self, fault: StoreError, last: Callable[[sqlite3.Connection], None] | None) -> None:
        """Take no more writes after ``last`` (a rescue of what is written), for ``fault``."""
        self._queue.put(_Halt(fault=fault, last=last))

    def stop(self) -> None:
        """Finish what is queued, then end the thread (blocking: call it from a thread).

        Writes held through a fault get one more try; what still cannot be
        written is given up, each named in the log.
        """
        self._stopping.set()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # --- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        held = _Held()
        while True:
            if self._health.fault is not None:
                if self._retry(held):
                    return
                continue
            item = self._queue.get()
            if item is None:
                return
            batch: list[_Op] = []
            stopping = self._gather(item, batch, held)
            while not stopping and len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = self._gather(item, batch, held)
            if batch:
                self._commit(batch, held)
            if stopping:
                self._give_up(held)
                return

    def _gather(self, item: _Item, batch: list[_Op], held: _Held) -> bool:
        """Add ``item`` to ``batch`` (or act on it); whether it asks the thread to stop."""
        if item is None:
            return True
        if isinstance(item, _Halt):
            if batch:
                self._commit(batch, held)
                batch.clear()
            self._halt(item)
            return False
        if self._health.fault is not None and not item.durable:
            self._answer_one(item, None, self._health.refusal())
            return False
        batch.append(item)
        return False

    def _halt(self, halt: _Halt) -> None:
        if halt.last is not None:
            try:
                halt.last(self._conn)
            except sqlite3.Error as exc:
                log.error("could not save the store before halting writes", error=str(exc))
        self._set_health(StoreHealth(fault=halt.fault, held=self._health.held))

    def _commit(self, batch: list[_Op], held: _Held) -> None:
        if self._health.fault is not None and _permanent(self._health.fault):
            self._hold(batch, held, self._health.fault)
            return
        started = time.perf_counter()
        try:
            outcomes = self._attempt(batch)
        except sqlite3.Error as exc:
            fault = fault_of(exc, self._path)
            if fault is None:
                failure = StoreError(f"cannot write to the store: {exc}; nothing of it was kept")
                self._answer([(op, None, failure) for op in batch])
                return
            self._hold(batch, held, fault)
            return
        if self.commit_timer is not None:
            self.commit_timer(time.perf_counter() - started)
        self._answer(outcomes)

    def _hold(self, batch: list[_Op], held: _Held, fault: StoreError) -> None:
        """Keep the durable operations of ``batch`` to write later; refuse the others."""
        for op in batch:
            if op.durable:
                held.ops.append(op)
            else:
                self._answer_one(op, None, _copy(fault))
        self._set_health(StoreHealth(fault=fault, held=len(held.ops)))

    def _retry(self, held: _Held) -> bool:
        """Wait, take what arrived, and try the held operations again; whether to stop.

        Each try also rewrites the probe row, so that a store with nothing held
        learns that the disk takes writes again. It returns once the store is
        writable (``False``) or the thread is to stop (``True``).
        """
        delay = FIRST_RETRY_S
        while True:
            stopping = self._stopping.wait(delay)
            delay = min(delay * 2, MAX_RETRY_S)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif isinstance(item, _Halt):
                    self._halt(item)
                elif item.durable:
                    held.ops.append(item)
                else:
                    self._answer_one(item, None, self._health.refusal())
            fault = self._health.fault
            if fault is None or not _permanent(fault):
                try:
                    outcomes = self._attempt(held.ops)
                except sqlite3.Error as exc:
                    cause = fault_of(exc, self._path) or fault
                    if cause is not None and (fault is None or cause.kind != fault.kind):
                        self._set_health(StoreHealth(fault=cause, held=len(held.ops)))
                else:
                    count = len(held.ops)
                    held.ops.clear()
                    self._set_health(StoreHealth())
                    log.info("the store takes writes again; held writes are written", count=count)
                    self._answer(outcomes)
                    return stopping and self._stop_now()
            if stopping:
                self._give_up(held)
                return True
            if self._health.held != len(held.ops):
                self._set_health(StoreHealth(fault=self._health.fault, held=len(held.ops)))

    def _stop_now(self) -> bool:
        """After a retry succeeded during a stop: write what is left queued, then stop."""
        batch: list[_Op] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Op):
                batch.append(item)
        if batch:
            held = _Held()
            self._commit(batch, held)
            self._give_up(held)
        return True

    def _give_up(self, held: _Held) -> None:
        if not held.ops:
            return
        fault = self._health.fault
        reason = fault.message if fault is not None else "the store refused writes"
        log.error(
            "gatewayd stopped with writes the store refused; they are given up "
            "(the next start settles the runs they were about from their exit files)",
            writes=[op.label for op in held.ops],
            reason=reason,
        )
        failure = StoreError(f"not written: gatewayd stopped while {reason}")
        self._answer([(op, None, failure) for op in held.ops])
        held.ops.clear()

    def _attempt(self, batch: list[_Op]) -> list[Outcome]:
        """Run ``batch`` in one transaction; sqlite3.Error if the disk or files failed."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = _run_all(conn, batch)
            if outcomes is None:
                # An operation failed part way: undo the batch, then run each
                # operation in a savepoint of its own, so that it fails alone.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = [_run_alone(conn, op) for op in batch]
            if self._health.fault is not None:
                conn.execute("UPDATE probe SET n = n + 1")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _answer(self, outcomes: list[Outcome]) -> None:
        """Answer a committed batch: first who hears of its events, then each caller."""
        self.batches += 1
        self.operations += len(outcomes)
        envelopes = [
            envelope
            for _, result, error in outcomes
            if error is None and isinstance(result, Published)
            for envelope in result.envelopes
        ]
        committed = self._committed
        if envelopes and committed is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                committed[0].call_soon_threadsafe(committed[1], envelopes)
        for op, result, error in outcomes:
            self._answer_one(op, result, error)

    @staticmethod
    def _answer_one(op: _Op, result: Any, error: BaseException | None) -> None:
        answer(op.loop, op.future, result, error)

    def _set_health(self, health: StoreHealth) -> None:
        before, self._health = self._health, health
        if before.fault is None and health.fault is not None:
            log.error(
                "the store takes no writes", kind=health.fault.kind, error=health.fault.message
            )
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                listener[0].call_soon_threadsafe(listener[1], health)


def _permanent(fault: StoreError) -> bool:
    """A damaged or replaced store is never written to again by this instance."""
    return not fault.passes


def _copy(fault: StoreError) -> StoreError:
    return type(fault)(fault.message, data=fault.data)


def _run_all(conn: sqlite3.Connection, batch: list[_Op]) -> list[Outcome] | None:
    """Every operation's result, or ``None`` as soon as one of them raises.

    A fault of the disk or the files is raised for the whole batch.
    """
    outcomes: list[Outcome] = []
    for op in batch:
        try:
            outcomes.append((op, op.fn(conn), None))
        except Exception as exc:
            forget_frames(exc)
            if isinstance(exc, sqlite3.Error) and is_outage(exc):
                raise
            return None
    return outcomes


def _run_alone(conn: sqlite3.Connection, op: _Op) -> Outcome:
    try:
        with savepoint(conn):
            return (op, op.fn(conn), None)
    except Exception as exc:
        forget_frames(exc)
        if isinstance(exc, sqlite3.Error) and is_outage(exc):
            raise
        return (op, None, exc)
