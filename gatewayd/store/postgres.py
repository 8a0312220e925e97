"""The PostgreSQL store: several gateways, on several hosts, on one database.

Everything lives in the cluster's schema (``[store] schema``); the operations
are in ``pginstances``, ``pgjobs``, ``pgruns``, ``pgevents`` and ``pgaudit``,
each in one transaction on a pooled async connection (psycopg 3), so the event
loop never waits for the server. Leases are judged by the database's clock;
event seqs follow commit order (:mod:`gatewayd.store.pgevents`); a lost server
is ridden out as :mod:`gatewayd.store.pgaccess` says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import psycopg.errors

from gatewayd.errors import LockBusy
from gatewayd.model import Session
from gatewayd.store import pgaudit, pgevents
from gatewayd.store.base import Audit, Publication, Store
from gatewayd.store.pgaccess import CONNECTION_LOST
from gatewayd.store.pgalerts import PostgresAlerts
from gatewayd.store.pgconnect import (
    CONNECT_TIMEOUT_S,
    check_version,
    migrate,
    new_pool,
    unreachable,
)
from gatewayd.store.pgrecords import PostgresInstances, PostgresJobs, PostgresRuns


class PostgresStore(PostgresInstances, PostgresJobs, PostgresRuns, PostgresAlerts, Store):
    """The store in ``location``'s database and schema, created or migrated at open
    (with ``read_only``, only checked, and never written to)."""

    async def open(self) -> None:
        """Connect, then create or migrate the schema; raise what is wrong.

        :class:`gatewayd.errors.StoreUnreachable` if the server does not answer
        within ``CONNECT_TIMEOUT_S``, :class:`gatewayd.errors.StoreTooNew` if a
        newer gatewayd wrote the schema.
        """
        if self._pool is not None:
            return
        pool = new_pool(self.location, read_only=self._read_only)
        leases = new_pool(self.location, read_only=self._read_only, max_size=1, name="-leases")
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with pool.connection() as conn:
                if self._read_only:
                    await check_version(conn, self.location)
                else:
                    await migrate(conn, self.location)
            await leases.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except CONNECTION_LOST as exc:
            await leases.close()
            await pool.close()
            raise unreachable(self.location, exc, "opening it") from None
        except BaseException:
            await leases.close()
            await pool.close()
            raise
        self._pool = pool
        self._lease_pool = leases

    @asynccontextmanager
    async def hold_lock(self, name: str, *, wait_s: float) -> AsyncIterator[None]:
        """The lock is a transaction's advisory lock, keyed by the schema and ``name``: the
        transaction lasts as long as the context, on a connection of its own."""
        key = f"{self.location.schema}:{name}"
        try:
            async with self._open_pool().connection() as conn:
                await conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_s}s",))
                try:
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,)
                    )
                except psycopg.errors.LockNotAvailable:
                    raise LockBusy.waited(name, wait_s) from None
                yield
        except CONNECTION_LOST as exc:
            raise self._lost(exc, f"holding the lock {name}") from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        leases, self._lease_pool = self._lease_pool, None
        for each in (leases, pool):
            if each is not None:
                await each.close()

    def stats(self) -> dict[str, int]:
        return {"commits": self._commits, "writes": self._commits}

    # --- sessions and events ---------------------------------------------------------

    async def publish(self, publication: Publication) -> None:
        op = partial(pgevents.publish, publication=publication, value=None)
        await self._publish(op, label="events")

    async def main_session_id(self, candidate: str) -> str:
        op = partial(pgevents.main_session_id, candidate=candidate)
        return await self._write(op, label="the main session's id")

    async def get_session(self, key: str) -> Session | None:
        return await self._call(partial(pgevents.get_session, key=key))

    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        return await self._call(partial(pgevents.list_sessions, limit=limit, before=before))

    async def last_event_seq(self) -> int:
        return await self._call(pgevents.last_seq)

    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        return await self._call(partial(pgevents.after, seq=seq, limit=limit))

    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        return await self._call(partial(pgevents.latest, limit=limit))

    async def prune_events(self, *, keep: int) -> int:
        op = partial(pgevents.prune, keep=keep)
        return await self._write(op, durable=False, label="pruning events")

    # --- checking -------------------------------------------------------------------

    async def audit(self) -> Audit:
        return await self._call(pgaudit.audit)
