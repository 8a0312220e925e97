"""The SQLite store's events and sessions: publications written inside a change's transaction.

Events get their ``seq`` from the table's AUTOINCREMENT inside the transaction
that writes them; transactions commit one at a time, so ``seq`` order is
commit order, across every connection to the file, and a reader of "events
after N" never misses one.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any, TypeVar

import orjson

from gatewayd.errors import NotFound
from gatewayd.model import Session
from gatewayd.store.base import Envelope, Publication
from gatewayd.store.tables import SESSIONS
from gatewayd.store.threads import Published

T = TypeVar("T")

_INSERT_SESSION = f"INSERT INTO sessions ({SESSIONS.names}) VALUES ({SESSIONS.marks})"
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
_MAIN_SESSION_ID = "main_session_id"


def publish(conn: sqlite3.Connection, publication: Publication, value: T) -> Published[T]:
    """Write ``publication`` inside the caller's transaction (see ``Store.publish``);
    ``value`` with the events as stored, with their seqs."""
    for session in publication.rows():
        if publication.replaces(session):
            conn.execute(
                _INSERT_SESSION.replace("INSERT", "INSERT OR REPLACE", 1), SESSIONS.values(session)
            )
        else:
            ending = dataclasses.replace(session, started_at=None, runtime_ms=None)
            conn.execute(f"{_INSERT_SESSION} {_SESSION_ENDING}", SESSIONS.values(ending))
    envelopes: list[Envelope] = []
    for body in publication.events:
        cursor = conn.execute("INSERT INTO events (body) VALUES (?)", (orjson.dumps(body),))
        envelopes.append({"seq": cursor.lastrowid, **body})
    return Published(value, envelopes)


def main_session_id(conn: sqlite3.Connection, candidate: str) -> str:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (_MAIN_SESSION_ID, candidate),
    )
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_MAIN_SESSION_ID,)).fetchone()
    return str(row[0])


def get_session(conn: sqlite3.Connection, key: str) -> Session | None:
    row = conn.execute(f"SELECT {SESSIONS.names} FROM sessions WHERE key = ?", (key,)).fetchone()
    return SESSIONS.load(row) if row else None


def list_sessions(conn: sqlite3.Connection, *, limit: int, before: str | None) -> list[Session]:
    """Started sessions by (started_at, key) descending, then those without a start."""
    columns = f"SELECT {SESSIONS.names} FROM sessions"
    started = f"{columns} WHERE started_at IS NOT NULL ORDER BY started_at DESC, key DESC"
    unstarted = f"{columns} WHERE started_at IS NULL ORDER BY key DESC"
    if before is None:
        rows = conn.execute(f"{started} LIMIT ?", (limit,)).fetchall()
        rows += conn.execute(f"{unstarted} LIMIT ?", (limit - len(rows),)).fetchall()
        return [SESSIONS.load(r) for r in rows]
    cursor = conn.execute(
        "SELECT started_at, key FROM sessions WHERE key = ?", (before,)
    ).fetchone()
    if cursor is None:
        raise NotFound(f"no session with key {before!r}")
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


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def _envelopes(rows: list[Any]) -> list[Envelope]:
    return [{"seq": seq, **orjson.loads(body)} for seq, body in rows]


def after(conn: sqlite3.Connection, seq: int, *, limit: int) -> list[Envelope]:
    rows = conn.execute(
        "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
    ).fetchall()
    return _envelopes(rows)


def latest(conn: sqlite3.Connection, *, limit: int) -> list[Envelope]:
    rows = conn.execute(
        "SELECT seq, body FROM events ORDER BY seq DESC LIMIT ?", (limit,)
    ).fetchall()
    return _envelopes(rows[::-1])


def prune(conn: sqlite3.Connection, *, keep: int) -> int:
    cursor = conn.execute(
        "DELETE FROM events WHERE seq <= "
        "(SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (keep,),
    )
    return cursor.rowcount
