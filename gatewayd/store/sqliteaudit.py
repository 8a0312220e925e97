"""What ``doctor`` asks of a SQL store: records that break the invariants, as stored.

These are read in SQL, not through the records' types, so that a row no
gatewayd could have written (an unknown status, say) is reported, not fatal.
"""

from __future__ import annotations

import sqlite3

from gatewayd.model import RunStatus
from gatewayd.store.base import Audit, BadEnding, SlotClaims
from gatewayd.store.sqlrows import from_us
from gatewayd.store.tables import LIVE

_KNOWN = ", ".join(f"'{status.value}'" for status in RunStatus)
ENDING_CHECKS = (
    (f"{LIVE} AND ended_at IS NOT NULL", "is live but has ended_at"),
    ("status = 'running' AND started_at IS NULL", "is running but never started"),
    ("status = 'queued' AND started_at IS NOT NULL", "is queued but has started"),
    (f"NOT ({LIVE}) AND ended_at IS NULL", "has ended without ended_at"),
    ("ended_at < started_at", "ended before it started"),
    (f"status NOT IN ({_KNOWN})", "has an unknown status"),
)


SLOTS_USED_TWICE = (
    "SELECT job_id, scheduled_for, count(*) FROM runs WHERE scheduled_for IS NOT NULL "
    "AND trigger <> 'retry' GROUP BY job_id, scheduled_for HAVING count(*) > 1"
)


def audit(conn: sqlite3.Connection) -> Audit:
    slots = conn.execute(SLOTS_USED_TWICE).fetchall()
    bad = [
        BadEnding(run_id=run_id, job_id=job_id, status=status, problem=problem)
        for where, problem in ENDING_CHECKS
        for run_id, job_id, status in conn.execute(
            f"SELECT run_id, job_id, status FROM runs WHERE {where}"
        )
    ]
    return Audit(
        slots_used_twice=tuple(
            SlotClaims(job_id=job_id, scheduled_for=from_us(slot), runs=n)  # type: ignore[arg-type]
            for job_id, slot, n in slots
        ),
        bad_endings=tuple(bad),
    )
