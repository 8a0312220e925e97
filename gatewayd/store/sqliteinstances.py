"""The SQLite store's instances and their leases, judged by SQLite's clock (``NOW_US``)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from gatewayd.errors import Conflict
from gatewayd.model import Instance
from gatewayd.store.sqlrows import from_us
from gatewayd.store.tables import INSTANCES

# The store's clock in SQL, as every time is stored: microseconds since the epoch
# (SQLite's clock has millisecond precision).
NOW_US = "(CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)"

_LEASE = f"lease_until = {NOW_US} + ?, heartbeat_at = {NOW_US}"


def now(conn: sqlite3.Connection) -> datetime:
    value = from_us(conn.execute(f"SELECT {NOW_US}").fetchone()[0])
    assert value is not None
    return value


_GIVEN = ("instance_id", "pid", "host", "host_id", "state_dir", "started_at")


def register(conn: sqlite3.Connection, instance: Instance, *, lease_s: float) -> Instance:
    try:
        conn.execute(
            f"INSERT INTO instances ({INSTANCES.names_of(_GIVEN)}, heartbeat_at, lease_until, "
            f"state) VALUES ({', '.join('?' * len(_GIVEN))}, {NOW_US}, {NOW_US} + ?, 'live')",
            (*INSTANCES.values_of(instance, _GIVEN), round(lease_s * 1e6)),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"an instance with id {instance.instance_id} exists") from None
    found = get(conn, instance.instance_id)
    assert found is not None
    return found


def renew(conn: sqlite3.Connection, instance_id: str, *, lease_s: float) -> bool:
    cursor = conn.execute(
        f"UPDATE instances SET {_LEASE} WHERE instance_id = ? AND state = 'live'",
        (round(lease_s * 1e6), instance_id),
    )
    return cursor.rowcount == 1


def stop(conn: sqlite3.Connection, instance_id: str) -> None:
    conn.execute(
        f"UPDATE instances SET state = 'stopped', lease_until = {NOW_US} "
        "WHERE instance_id = ? AND state = 'live'",
        (instance_id,),
    )


def take_over(
    conn: sqlite3.Connection, instance_id: str, *, by: str, grace_s: float, proven_dead: bool
) -> bool:
    cursor = conn.execute(
        "UPDATE instances SET state = 'gone', taken_by = ? WHERE instance_id = ? "
        f"AND state = 'live' AND (? OR lease_until IS NULL OR lease_until + ? < {NOW_US})",
        (by, instance_id, int(proven_dead), round(grace_s * 1e6)),
    )
    return cursor.rowcount == 1


def get(conn: sqlite3.Connection, instance_id: str) -> Instance | None:
    row = conn.execute(
        f"SELECT {INSTANCES.names} FROM instances WHERE instance_id = ?", (instance_id,)
    ).fetchone()
    return INSTANCES.load(row) if row else None


def every(conn: sqlite3.Connection) -> list[Instance]:
    rows = conn.execute(
        f"SELECT {INSTANCES.names} FROM instances ORDER BY started_at, instance_id"
    ).fetchall()
    return [INSTANCES.load(r) for r in rows]
