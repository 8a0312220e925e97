"""The SQLite store's operations on runs: each runs on a connection, inside a transaction.

Each transition reads the run, checks it with the pure rules of
:mod:`gatewayd.store.transitions`, and writes it back, in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from gatewayd.errors import Conflict, NotFound, SlotTaken
from gatewayd.model import InstanceState, Run, RunCounts, RunStatus
from gatewayd.store.base import NOTHING, Publication
from gatewayd.store.sqliteevents import publish
from gatewayd.store.sqlrows import from_us, to_us
from gatewayd.store.tables import LIVE, RUN_CHANGES, RUNS
from gatewayd.store.threads import Published
from gatewayd.store.transitions import Expected, check_expected, check_holder, slot_key

# The most job ids one query names (SQLite allows 32766 host parameters).
_IN_CHUNK = 500
_SELECT = f"SELECT {RUNS.names} FROM runs"


def _check(conn: sqlite3.Connection, job_id: str, expected: Expected, *, advances: bool) -> None:
    """Raise ``StaleDecision`` unless the job is as the decision saw it (reading only
    what the decision named)."""
    live: list[tuple[str]] = []
    if expected.live is not None:
        live = conn.execute(
            f"SELECT run_id FROM runs WHERE job_id = ? AND {LIVE}", (job_id,)
        ).fetchall()
    slot = None
    if advances:
        slot = conn.execute("SELECT next_slot FROM jobs WHERE id = ?", (job_id,)).fetchone()
    check_expected(
        job_id,
        expected,
        live_now=(run_id for (run_id,) in live),
        next_slot_now=None if slot is None else from_us(slot[0]),
        advances=advances,
        claim_now=expected.claim,  # it does not claim (see Store.claim_due)
    )


def fence(conn: sqlite3.Connection, owners: set[str | None]) -> None:
    """Refuse the write if an owner of its runs was taken over (see ``check_holder``)."""
    for owner in owners:
        if owner is None:
            continue
        row = conn.execute("SELECT state FROM instances WHERE instance_id = ?", (owner,)).fetchone()
        check_holder(owner, None if row is None else InstanceState(row[0]))


def record(
    conn: sqlite3.Connection,
    runs: Sequence[Run],
    *,
    advance_job: str | None,
    next_slot: datetime | None,
    expected: Expected | None,
    publication: Publication,
) -> Published[None]:
    if expected is not None and runs:
        _check(conn, runs[0].job_id, expected, advances=advance_job is not None)
    fence(conn, {run.owner for run in runs})
    for run in runs:
        try:
            conn.execute(f"INSERT INTO runs ({RUNS.names}) VALUES ({RUNS.marks})", RUNS.values(run))
        except sqlite3.IntegrityError:
            key = slot_key(run)
            if (
                key is not None
                and conn.execute(
                    "SELECT 1 FROM runs WHERE job_id = ? AND scheduled_for = ? "
                    "AND trigger != 'retry'",
                    (key[0], to_us(key[1])),
                ).fetchone()
            ):
                raise SlotTaken(f"job {run.job_id} already has a run for slot {key[1]}") from None
            raise Conflict(f"a run with id {run.run_id} exists") from None
    if advance_job is not None:
        cursor = conn.execute(
            "UPDATE jobs SET next_slot = ? WHERE id = ?", (to_us(next_slot), advance_job)
        )
        if cursor.rowcount == 0:
            raise NotFound(f"no job with id {advance_job}")
    return publish(conn, publication, None)


def load(conn: sqlite3.Connection, run_id: str) -> Run:
    row = conn.execute(f"{_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    return RUNS.load(row)


def transition(
    run_id: str,
    change: Callable[[Run], Run],
    publication: Publication = NOTHING,
    *,
    fenced: bool = True,
) -> Callable[[sqlite3.Connection], Published[Run]]:
    """The operation that moves a run by ``change`` (which raises what it refuses);
    ``fenced``: refused if the run's owner after it was taken over."""

    def op(conn: sqlite3.Connection) -> Published[Run]:
        run = change(load(conn, run_id))
        if fenced:
            fence(conn, {run.owner})
        conn.execute(
            f"UPDATE runs SET {RUNS.assignments(RUN_CHANGES)} WHERE run_id = ?",
            (*RUNS.values_of(run, RUN_CHANGES), run_id),
        )
        return publish(conn, publication, run)

    return op


def get(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(f"{_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    return RUNS.load(row) if row else None


def page(conn: sqlite3.Connection, job_id: str, *, limit: int, before: str | None) -> list[Run]:
    below = None
    if before is not None:
        found = conn.execute("SELECT seq FROM runs WHERE run_id = ?", (before,)).fetchone()
        if found is None:
            raise NotFound(f"no run with id {before!r}")
        below = found[0]
    rows = conn.execute(
        f"{_SELECT} WHERE job_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (job_id, (1 << 63) - 1 if below is None else below, limit),
    ).fetchall()
    return [RUNS.load(r) for r in rows]


def latest(conn: sqlite3.Connection, job_ids: Sequence[str] | None) -> dict[str, Run]:
    if job_ids is None:
        rows = conn.execute(
            f"{_SELECT} WHERE seq IN (SELECT max(seq) FROM runs GROUP BY job_id)"
        ).fetchall()
    else:
        rows = []
        ids = list(job_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows += conn.execute(
                f"{_SELECT} WHERE seq IN (SELECT max(seq) FROM runs "
                f"WHERE job_id IN ({marks}) GROUP BY job_id)",
                chunk,
            ).fetchall()
    runs = [RUNS.load(r) for r in rows]
    return {run.job_id: run for run in runs}


def previous_started(conn: sqlite3.Connection, job_id: str, before_run_id: str) -> Run | None:
    row = conn.execute(
        f"{_SELECT} WHERE job_id = ? AND started_at IS NOT NULL "
        "AND seq < coalesce((SELECT seq FROM runs WHERE run_id = ?), 0) "
        "ORDER BY seq DESC LIMIT 1",
        (job_id, before_run_id),
    ).fetchone()
    return RUNS.load(row) if row else None


def latest_with(conn: sqlite3.Connection, job_id: str, status: RunStatus) -> Run | None:
    row = conn.execute(
        f"{_SELECT} WHERE job_id = ? AND status = ? ORDER BY seq DESC LIMIT 1",
        (job_id, status.value),
    ).fetchone()
    return RUNS.load(row) if row else None


def last_successes(conn: sqlite3.Connection) -> dict[str, datetime]:
    rows = conn.execute(
        "SELECT job_id, max(ended_at) FROM runs WHERE status = 'succeeded' GROUP BY job_id"
    ).fetchall()
    return {job_id: when for job_id, us in rows if (when := from_us(us)) is not None}


def live(conn: sqlite3.Connection, job_id: str | None) -> list[Run]:
    query = f"{_SELECT} WHERE {LIVE}"
    params: tuple[str, ...] = ()
    if job_id is not None:
        query += " AND job_id = ?"
        params = (job_id,)
    rows = conn.execute(query + " ORDER BY seq", params).fetchall()
    return [RUNS.load(r) for r in rows]


def cancel_requests(conn: sqlite3.Connection, owner: str) -> list[Run]:
    rows = conn.execute(
        f"{_SELECT} WHERE {LIVE} AND owner = ? AND cancel_requested IS NOT NULL ORDER BY seq",
        (owner,),
    ).fetchall()
    return [RUNS.load(r) for r in rows]


def count(conn: sqlite3.Connection) -> RunCounts:
    rows = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    return RunCounts(by_status=tuple(sorted((RunStatus(s), n) for s, n in rows)))


def prune(conn: sqlite3.Connection, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
    ended = f"NOT ({LIVE})"
    doomed = conn.execute(
        f"{_SELECT} WHERE queued_at < ? AND {ended}", (to_us(queued_before),)
    ).fetchall()
    crowded = conn.execute(
        "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > ?", (keep_per_job,)
    ).fetchall()
    for (job_id,) in crowded:
        doomed += conn.execute(
            f"{_SELECT} WHERE job_id = ? AND {ended} AND "
            "seq < (SELECT seq FROM runs WHERE job_id = ? ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?) AND queued_at >= ?",
            (job_id, job_id, keep_per_job - 1, to_us(queued_before)),
        ).fetchall()
    runs = [RUNS.load(r) for r in doomed]
    gone = [(run.run_id,) for run in runs]
    conn.executemany("DELETE FROM runs WHERE run_id = ?", gone)
    conn.executemany("DELETE FROM sessions WHERE run_id = ? AND key != 'main'", gone)
    return runs
