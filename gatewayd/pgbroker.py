"""Hints between gateways on one PostgreSQL database, by ``NOTIFY`` and ``LISTEN``.

A hint reaches this process's own listeners at once (as :class:`LocalBroker`
carries it), and every other instance on the database through one channel per
cluster schema. Hints sent close together are sent once; a hint lost (the
server restarting, say) only delays a change until the backstop.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import anyio.abc
import psycopg
import structlog
from psycopg import sql

from gatewayd.broker import Hint, LocalBroker
from gatewayd.store.location import StoreLocation

log = structlog.get_logger("gatewayd.broker")

_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 5.0
_HINTS = frozenset(h.value for h in Hint)


class PostgresBroker(LocalBroker):
    """Hints to every instance on the database of ``location``; see the module docstring."""

    def __init__(self, location: StoreLocation) -> None:
        super().__init__()
        self._location = location
        self.channel = f"gatewayd_{location.schema}"
        self._sender = uuid.uuid4().hex  # its own notifications come back; they are skipped
        self._pending: set[Hint] = set()
        self._wanted = anyio.Event()

    def hint(self, hint: Hint, *, origin: object = None) -> None:
        super().hint(hint, origin=origin)
        self._pending.add(hint)
        self._wanted.set()

    async def relay(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Send this process's hints and hear the others'; until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._send)
            await tg.start(self._listen)
            task_status.started()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._location.conninfo, autocommit=True, connect_timeout=5
        )

    async def _send(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            hints, self._pending = self._pending, set()
            try:
                if conn is None or conn.closed:
                    conn = await self._connect()
                for hint in sorted(hints):
                    await conn.execute(
                        "SELECT pg_notify(%s, %s)", (self.channel, f"{hint.value} {self._sender}")
                    )
            except psycopg.Error as exc:
                log.warning("a hint to other instances was lost", error=str(exc).strip())
                conn = None

    async def _listen(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        delay = _RECONNECT_FIRST_S
        started = False
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    delay = _RECONNECT_FIRST_S
                    if not started:
                        started = True
                        task_status.started()
                    async for note in conn.notifies():
                        name, _, sender = note.payload.partition(" ")
                        if sender != self._sender and name in _HINTS:
                            LocalBroker.hint(self, Hint(name))
            except psycopg.Error as exc:
                log.warning(
                    "not hearing other instances' hints; the backstop covers them",
                    error=str(exc).strip(),
                )
            if not started:
                started = True
                task_status.started()  # the backstop covers what is missed meanwhile
            await anyio.sleep(delay)  # the server's time to come back, not a race
            delay = min(delay * 2, _RECONNECT_MAX_S)
