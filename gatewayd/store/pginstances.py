"""The PostgreSQL store's instances and their leases, judged by the database's clock."""

from __future__ import annotations

from datetime import datetime

import psycopg.errors

from gatewayd.errors import Conflict
from gatewayd.model import Instance, InstanceState
from gatewayd.store.pgaccess import Conn
from gatewayd.store.sqlrows import from_us
from gatewayd.store.tables import INSTANCES
from gatewayd.store.transitions import check_holder

# The database's clock, as every time is stored: microseconds since the epoch.
# clock_timestamp(), not now(): a transaction's start may be long past.
NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"
_GIVEN = ("instance_id", "pid", "host", "host_id", "state_dir", "started_at")
_SELECT = f"SELECT {INSTANCES.names} FROM instances"


async def now(conn: Conn) -> datetime:
    cursor = await conn.execute(f"SELECT {NOW_US}")
    row = await cursor.fetchone()
    assert row is not None
    value = from_us(row[0])
    assert value is not None
    return value


async def register(conn: Conn, instance: Instance, *, lease_s: float) -> Instance:
    marks = ", ".join(["%s"] * len(_GIVEN))
    try:
        cursor = await conn.execute(
            f"INSERT INTO instances ({INSTANCES.names_of(_GIVEN)}, heartbeat_at, lease_until, "
            f"state) VALUES ({marks}, {NOW_US}, {NOW_US} + %s, 'live') "
            f"RETURNING {INSTANCES.names}",
            (*INSTANCES.values_of(instance, _GIVEN), round(lease_s * 1e6)),
        )
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"an instance with id {instance.instance_id} exists") from None
    row = await cursor.fetchone()
    assert row is not None
    return INSTANCES.load(row)


async def renew(conn: Conn, instance_id: str, *, lease_s: float) -> bool:
    cursor = await conn.execute(
        f"UPDATE instances SET lease_until = {NOW_US} + %s, heartbeat_at = {NOW_US} "
        "WHERE instance_id = %s AND state = 'live'",
        (round(lease_s * 1e6), instance_id),
    )
    return cursor.rowcount == 1


async def stop(conn: Conn, instance_id: str) -> None:
    await conn.execute(
        f"UPDATE instances SET state = 'stopped', lease_until = {NOW_US} "
        "WHERE instance_id = %s AND state = 'live'",
        (instance_id,),
    )


async def take_over(
    conn: Conn, instance_id: str, *, by: str, grace_s: float, proven_dead: bool
) -> bool:
    # Waits for the writes its runs' fence let through (see ``fence``).
    await conn.execute("SELECT 1 FROM instances WHERE instance_id = %s FOR UPDATE", (instance_id,))
    cursor = await conn.execute(
        "UPDATE instances SET state = 'gone', taken_by = %s WHERE instance_id = %s "
        f"AND state = 'live' AND (%s OR lease_until IS NULL OR lease_until + %s < {NOW_US})",
        (by, instance_id, proven_dead, round(grace_s * 1e6)),
    )
    return cursor.rowcount == 1


async def get(conn: Conn, instance_id: str) -> Instance | None:
    cursor = await conn.execute(f"{_SELECT} WHERE instance_id = %s", (instance_id,))
    row = await cursor.fetchone()
    return INSTANCES.load(row) if row else None


async def every(conn: Conn) -> list[Instance]:
    cursor = await conn.execute(f"{_SELECT} ORDER BY started_at, instance_id")
    return [INSTANCES.load(r) for r in await cursor.fetchall()]


async def fence(conn: Conn, owners: set[str | None]) -> None:
    """Refuse the write if an owner of its runs was taken over (see ``check_holder``).

    The owners' rows are locked (``FOR KEY SHARE``) until the write commits, and a
    take-over locks the row ``FOR UPDATE`` first, so that it waits for the write:
    a write either lands before its owner is taken over, or is refused. The
    weakest lock is taken so that a lease's renewal (an update of no key) never
    waits for the runs' writes: under a steady stream of them, a stronger one
    would starve the renewal until the lease lapsed.
    """
    named = sorted(o for o in owners if o is not None)
    if not named:
        return
    cursor = await conn.execute(
        "SELECT instance_id, state FROM instances WHERE instance_id = ANY(%s) FOR KEY SHARE",
        (named,),
    )
    states = {instance_id: InstanceState(state) for instance_id, state in await cursor.fetchall()}
    for owner in named:
        check_holder(owner, states.get(owner))
