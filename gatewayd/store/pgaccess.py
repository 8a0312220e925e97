"""The PostgreSQL store's connections, and how its parts read and write through them.

Every operation takes a connection from the pool and runs in one transaction
(``READ COMMITTED``; what must not race is locked row by row in the
operation). A lost server never kills the daemon and never drops a record:

- a write that must not be lost (a run's transition) is held, and written
  once the server answers again; one whose commit was cut off is looked up by
  its transaction id (``pg_xact_status``), so that it is never written twice;
- any other write, and a read, fails with :class:`StoreUnreachable`, after one
  more try on a fresh connection (the pool's idle ones die with the server);
- the health says so meanwhile, and one prober finds out when it answers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
import psycopg.errors
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gatewayd.errors import StoreError, StoreUnreachable
from gatewayd.store.base import Envelope, EventsListener, HealthListener, StoreHealth
from gatewayd.store.commitorder import CommitOrder
from gatewayd.store.location import StoreLocation
from gatewayd.store.pgconnect import unreachable
from gatewayd.store.threads import Published

log = structlog.get_logger("gatewayd.store")

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
Op = Callable[[Conn], Awaitable[T]]
# Transactions that lost a race the server detected (a deadlock, a serialization
# failure) are tried again, up to this many times.
_RACE_RETRIES = 10
# A lost server is probed this often (doubling from the first), each probe
# waiting this long for a connection. The wait is short: the pool gives up on a
# connection that failed, and only a new request makes it try again, so a probe
# that waited long would find the server back long after the others do (and its
# lease taken over meanwhile).
_PROBE_FIRST_S = 0.05
_PROBE_MAX_S = 0.5
_PROBE_WAIT_S = 0.5
CONNECTION_LOST = (psycopg.OperationalError, PoolTimeout)
_RACES = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class _CutOff(Exception):
    """The connection was lost during COMMIT: whether it committed is not known yet."""

    def __init__(self, xid: str, value: object) -> None:
        self.xid = xid
        self.value = value


class PostgresAccess:
    """Reads and writes on a pool of connections to the cluster's schema."""

    def __init__(self, location: StoreLocation, *, read_only: bool = False) -> None:
        self.location = location
        self._read_only = read_only
        self._pool: AsyncConnectionPool[Conn] | None = None
        # Leases are renewed on a connection of their own, so that an instance busy
        # with many writes never lets its lease lapse waiting in their queue.
        self._lease_pool: AsyncConnectionPool[Conn] | None = None
        self._fault: StoreUnreachable | None = None
        self._held = 0
        self._answered = anyio.Event()  # set when a fault ends
        self._faulted = anyio.Event()  # set when one begins
        self._probing = anyio.Lock()
        self._health_listeners: list[HealthListener] = []
        self._event_listeners: list[EventsListener] = []
        self._order = CommitOrder(self._tell)
        self._commits = 0
        self._commit_timers: list[Callable[[float], None]] = []

    # --- health ---------------------------------------------------------------------

    @property
    def health(self) -> StoreHealth:
        return StoreHealth(fault=self._fault, held=self._held)

    def watch_health(self, listener: HealthListener) -> None:
        self._health_listeners.append(listener)

    def watch_events(self, listener: EventsListener) -> None:
        self._event_listeners.append(listener)

    def _lost(self, exc: BaseException, doing: str) -> StoreUnreachable:
        fault = unreachable(self.location, exc, doing)
        if self._fault is None:
            self._fault = fault
            self._answered = anyio.Event()
            self._faulted.set()
            log.error("the store does not answer", store=self.location.shown, error=fault.message)
            self._tell_health()
        return fault

    def _answers(self) -> None:
        if self._fault is not None:
            self._fault = None
            self._faulted = anyio.Event()
            self._answered.set()
            log.info("the store answers again", store=self.location.shown)
            self._tell_health()

    def _tell_health(self) -> None:
        health = self.health
        for listener in self._health_listeners:
            listener(health)

    async def until_answers(self) -> None:
        """Return once the server answers; one caller probes it, the others wait."""
        while self._fault is not None:
            if self._probing.locked():
                await self._answered.wait()
                continue
            async with self._probing:
                delay = _PROBE_FIRST_S
                while self._fault is not None:
                    try:
                        async with self._open_pool().connection(timeout=_PROBE_WAIT_S) as conn:
                            await conn.execute("SELECT 1")
                    except (*CONNECTION_LOST, OSError):
                        await anyio.sleep(delay)  # the server's time to come back, not a race
                        delay = min(delay * 2, _PROBE_MAX_S)
                        continue
                    self._answers()

    def time_commits(self, listener: Callable[[float], None]) -> None:
        self._commit_timers.append(listener)

    async def upkeep(self) -> None:
        """Probe a lost server until it answers, each time it is lost; until cancelled."""
        while True:
            await self._faulted.wait()
            await self.until_answers()

    # --- operations -----------------------------------------------------------------

    def _open_pool(self) -> AsyncConnectionPool[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"the store {self.location.shown} is not open")
        return pool

    async def _call(self, op: Op[T]) -> T:
        """A read, tried once more on a fresh connection if the first one was lost."""
        try:
            value = await self._read(op)
        except CONNECTION_LOST as exc:
            self._lost(exc, "reading")
            try:
                value = await self._read(op)
            except CONNECTION_LOST as again:
                raise self._lost(again, "reading") from None
        self._answers()
        return value

    async def _read(self, op: Op[T]) -> T:
        async with self._open_pool().connection() as conn:
            value = await op(conn)
            await conn.rollback()
        return value

    async def _transact(self, op: Op[T], pool: AsyncConnectionPool[Conn]) -> T:
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT pg_current_xact_id()::text")
            row = await cursor.fetchone()
            assert row is not None
            try:
                value = await op(conn)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await conn.rollback()
                raise
            envelopes = value.envelopes if isinstance(value, Published) else []
            self._order.taken(envelopes)
            started = time.perf_counter()
            try:
                await conn.commit()
            except CONNECTION_LOST as exc:
                raise _CutOff(str(row[0]), value) from exc
            except BaseException:
                self._order.undone(envelopes)
                raise
            for listener in self._commit_timers:
                listener(time.perf_counter() - started)
            return value

    async def _committed(self, xid: str) -> bool:
        async with self._open_pool().connection() as conn:
            cursor = await conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,))
            row = await cursor.fetchone()
            await conn.rollback()
        return row is not None and row[0] == "committed"

    async def _write(
        self, op: Op[T], *, durable: bool = True, label: str = "a write", lease: bool = False
    ) -> T:
        """``op`` in one transaction, committed; see the module docstring for faults.

        A durable write waits for a lost server and is written then; any other
        is refused with the fault. A ``lease`` write goes on the leases' connection.
        """
        if self._read_only:
            raise StoreError(f"the store {self.location.shown} is opened read-only")
        races = 0
        retried = False
        while True:
            try:
                pool = self._lease_pool if lease and self._lease_pool else self._open_pool()
                value = await self._transact(op, pool)
            except _RACES:
                races += 1
                if races > _RACE_RETRIES:
                    raise
                continue
            except _CutOff as cut:
                self._lost(cut.__cause__ or cut, f"committing {label}")
                if not await self._learn_committed(cut.xid, label):
                    if isinstance(cut.value, Published):
                        self._order.undone(cut.value.envelopes)
                    continue
                value = cut.value  # type: ignore[assignment]
            except CONNECTION_LOST as exc:
                fault = self._lost(exc, f"writing {label}")
                if not retried:
                    retried = True  # once more, on a fresh connection
                    continue
                if not durable:
                    raise fault from None
                await self._held_until_answers(label)
                continue
            self._commits += 1
            self._answers()
            return value

    async def _held_until_answers(self, label: str) -> None:
        """Hold a write (counted in the health) until the server answers."""
        self._held += 1
        log.warning("a write is held until the store answers", write=label)
        try:
            await self.until_answers()
        finally:
            self._held -= 1

    async def _learn_committed(self, xid: str, label: str) -> bool:
        """Whether transaction ``xid``, whose commit was cut off, committed; asked once
        the server answers."""
        while True:
            await self._held_until_answers(label)
            try:
                return await self._committed(xid)
            except CONNECTION_LOST as exc:
                self._lost(exc, f"asking whether {label} was written")

    async def _publish(
        self, op: Op[Published[T]], *, durable: bool = True, label: str = "a write"
    ) -> T:
        """A write that also writes events: its value; the events go to the listeners."""
        published = await self._write(op, durable=durable, label=label)
        self._order.committed(published.envelopes)
        return published.value

    def _tell(self, envelopes: Sequence[Envelope]) -> None:
        for listener in self._event_listeners:
            listener(envelopes)
