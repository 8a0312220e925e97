"""What ``doctor`` asks of the PostgreSQL store: records that break the invariants, as stored.

The checks are SQLite's (:mod:`gatewayd.store.sqliteaudit`), run in SQL, so
that a row no gatewayd could have written is reported, not fatal.
"""

from __future__ import annotations

from gatewayd.store.base import Audit, BadEnding, SlotClaims
from gatewayd.store.pgaccess import Conn
from gatewayd.store.sqliteaudit import ENDING_CHECKS, SLOTS_USED_TWICE
from gatewayd.store.sqlrows import from_us


async def audit(conn: Conn) -> Audit:
    cursor = await conn.execute(SLOTS_USED_TWICE)
    slots = await cursor.fetchall()
    bad = []
    for where, problem in ENDING_CHECKS:
        cursor = await conn.execute(f"SELECT run_id, job_id, status FROM runs WHERE {where}")
        bad += [
            BadEnding(run_id=run_id, job_id=job_id, status=status, problem=problem)
            for run_id, job_id, status in await cursor.fetchall()
        ]
    return Audit(
        slots_used_twice=tuple(
            SlotClaims(job_id=job_id, scheduled_for=from_us(slot), runs=n)  # type: ignore[arg-type]
            for job_id, slot, n in slots
        ),
        bad_endings=tuple(bad),
    )
