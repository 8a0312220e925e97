"""The PostgreSQL store's events and sessions: publications written inside a change's transaction.

Event seqs follow commit order. A sequence alone would not give that: two
transactions may take seqs 7 and 8 and commit 8 first, and a follower that read
8 would never look back for 7. So the seqs are taken from one counter row,
last thing in the transaction: its row lock is held until the commit, so the
next publisher takes its seqs only once this one has committed. Seqs are
gapless and commit order is seq order, for every instance on the database.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import orjson

from gatewayd.errors import NotFound
from gatewayd.model import Session
from gatewayd.store.base import Envelope, Publication
from gatewayd.store.pgaccess import Conn
from gatewayd.store.tables import SESSIONS
from gatewayd.store.threads import Published

T = TypeVar("T")

_INSERT_SESSION = f"INSERT INTO sessions ({SESSIONS.names}) VALUES ({SESSIONS.placeholders('%s')})"
_KEPT = [c.name for c in SESSIONS.columns if c.name != "key"]
_SESSION_REPLACE = "ON CONFLICT (key) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in _KEPT
)
# An ending keeps the start its row has; its runtime is derived from it.
_SESSION_ENDING = (
    "ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}" for name in _KEPT if name not in ("started_at", "runtime_ms")
    )
    + (
        ", runtime_ms = CASE WHEN sessions.started_at IS NULL THEN NULL "
        "ELSE greatest(0, (excluded.ended_at - sessions.started_at + 500) / 1000) END"
    )
)
_MAIN_SESSION_ID = "main_session_id"
_COLUMNS = f"SELECT {SESSIONS.names} FROM sessions"


async def publish(conn: Conn, publication: Publication, value: T) -> Published[T]:
    """Write ``publication`` inside the caller's transaction, last in it (see the
    module docstring); ``value`` with the events as stored, with their seqs."""
    for session in publication.rows():
        if publication.replaces(session):
            await conn.execute(f"{_INSERT_SESSION} {_SESSION_REPLACE}", SESSIONS.values(session))
        else:
            ending = dataclasses.replace(session, started_at=None, runtime_ms=None)
            await conn.execute(f"{_INSERT_SESSION} {_SESSION_ENDING}", SESSIONS.values(ending))
    events = publication.events
    if not events:
        return Published(value, [])
    cursor = await conn.execute(
        "UPDATE counters SET value = value + %s WHERE name = 'events' RETURNING value",
        (len(events),),
    )
    row = await cursor.fetchone()
    assert row is not None
    first = int(row[0]) - len(events) + 1
    envelopes: list[Envelope] = [{"seq": first + i, **body} for i, body in enumerate(events)]
    async with conn.cursor() as many:
        await many.executemany(
            "INSERT INTO events (seq, body) VALUES (%s, %s)",
            [(first + i, orjson.dumps(body)) for i, body in enumerate(events)],
        )
    return Published(value, envelopes)


async def main_session_id(conn: Conn, candidate: str) -> str:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (_MAIN_SESSION_ID, candidate),
    )
    cursor = await conn.execute("SELECT value FROM meta WHERE key = %s", (_MAIN_SESSION_ID,))
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def get_session(conn: Conn, key: str) -> Session | None:
    cursor = await conn.execute(f"{_COLUMNS} WHERE key = %s", (key,))
    row = await cursor.fetchone()
    return SESSIONS.load(row) if row else None


async def _rows(conn: Conn, query: str, params: tuple[Any, ...]) -> list[Any]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def list_sessions(conn: Conn, *, limit: int, before: str | None) -> list[Session]:
    """Started sessions by (started_at, key) descending, then those without a start."""
    started = f"{_COLUMNS} WHERE started_at IS NOT NULL"
    order = "ORDER BY started_at DESC, key DESC LIMIT %s"
    unstarted = f"{_COLUMNS} WHERE started_at IS NULL"
    if before is None:
        rows = await _rows(conn, f"{started} {order}", (limit,))
        rows += await _rows(conn, f"{unstarted} ORDER BY key DESC LIMIT %s", (limit - len(rows),))
        return [SESSIONS.load(r) for r in rows]
    found = await _rows(conn, "SELECT started_at, key FROM sessions WHERE key = %s", (before,))
    if not found:
        raise NotFound(f"no session with key {before!r}")
    at, key = found[0]
    if at is not None:
        rows = await _rows(
            conn, f"{started} AND (started_at, key) < (%s, %s) {order}", (at, key, limit)
        )
        rows += await _rows(conn, f"{unstarted} ORDER BY key DESC LIMIT %s", (limit - len(rows),))
    else:
        rows = await _rows(
            conn, f"{unstarted} AND key < %s ORDER BY key DESC LIMIT %s", (before, limit)
        )
    return [SESSIONS.load(r) for r in rows]


async def last_seq(conn: Conn) -> int:
    rows = await _rows(conn, "SELECT value FROM counters WHERE name = 'events'", ())
    return int(rows[0][0]) if rows else 0


def _envelopes(rows: list[Any]) -> list[Envelope]:
    return [{"seq": seq, **orjson.loads(body)} for seq, body in rows]


async def after(conn: Conn, seq: int, *, limit: int) -> list[Envelope]:
    rows = await _rows(
        conn, "SELECT seq, body FROM events WHERE seq > %s ORDER BY seq LIMIT %s", (seq, limit)
    )
    return _envelopes(rows)


async def latest(conn: Conn, *, limit: int) -> list[Envelope]:
    rows = await _rows(conn, "SELECT seq, body FROM events ORDER BY seq DESC LIMIT %s", (limit,))
    return _envelopes(rows[::-1])


async def prune(conn: Conn, *, keep: int) -> int:
    cursor = await conn.execute(
        "DELETE FROM events WHERE seq <= "
        "(SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET %s)",
        (keep,),
    )
    return cursor.rowcount
