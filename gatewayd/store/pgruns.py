"""The PostgreSQL store's operations on runs: each runs on a connection, inside a transaction.

What must not race is locked row by row, under ``READ COMMITTED``: a decision
about a job's new runs locks the job's row (``FOR UPDATE``) before it checks
what the decision saw, so that two deciders take turns; a transition locks
the run's row, reads it, checks it with the pure rules of
:mod:`gatewayd.store.transitions`, and writes it back. Each write about a
claim locks its owner's instance row too (:func:`pginstances.fence`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg.errors

from gatewayd.errors import Conflict, NotFound, SlotTaken
from gatewayd.model import Run, RunCounts, RunStatus
from gatewayd.store.base import NOTHING, Publication
from gatewayd.store.pgaccess import Conn, Op
from gatewayd.store.pgevents import publish
from gatewayd.store.pginstances import NOW_US, fence
from gatewayd.store.sqlrows import from_us, to_us
from gatewayd.store.tables import LIVE, RUN_CHANGES, RUNS
from gatewayd.store.threads import Published
from gatewayd.store.transitions import Expected, check_expected

_SELECT = f"SELECT {RUNS.names} FROM runs"
_INSERT = f"INSERT INTO runs ({RUNS.names}) VALUES ({RUNS.placeholders('%s')})"
_SLOT_INDEX = "runs_slot"


async def _rows(conn: Conn, query: str, params: Sequence[Any] = ()) -> list[Any]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def _check(conn: Conn, job_id: str, expected: Expected, *, advances: bool) -> None:
    """Lock the job, then raise ``StaleDecision`` unless it is as the decision saw it."""
    slot = await _rows(
        conn,
        f"SELECT next_slot, CASE WHEN claimed_until > {NOW_US} THEN claimed_by END "
        "FROM jobs WHERE id = %s FOR UPDATE",
        (job_id,),
    )
    live: list[Any] = []
    if expected.live is not None:
        live = await _rows(conn, f"SELECT run_id FROM runs WHERE job_id = %s AND {LIVE}", (job_id,))
    check_expected(
        job_id,
        expected,
        live_now=(run_id for (run_id,) in live),
        next_slot_now=from_us(slot[0][0]) if slot else None,
        advances=advances,
        claim_now=slot[0][1] if slot else None,
    )


async def record(
    conn: Conn,
    runs: Sequence[Run],
    *,
    advance_job: str | None,
    next_slot: datetime | None,
    expected: Expected | None,
    publication: Publication,
) -> Published[None]:
    if expected is not None and runs:
        await _check(conn, runs[0].job_id, expected, advances=advance_job is not None)
    await fence(conn, {run.owner for run in runs})
    try:
        async with conn.cursor() as cursor:
            await cursor.executemany(_INSERT, [RUNS.values(run) for run in runs])
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == _SLOT_INDEX:
            raise SlotTaken(
                f"job {runs[0].job_id} already has a run for one of these slots"
            ) from None
        raise Conflict("a run with one of these ids exists") from None
    if advance_job is not None:
        cursor = await conn.execute(
            "UPDATE jobs SET next_slot = %s, claimed_by = NULL, claimed_until = NULL WHERE id = %s",
            (to_us(next_slot), advance_job),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"no job with id {advance_job}")
    return await publish(conn, publication, None)


def transition(
    run_id: str,
    change: Callable[[Run], Run],
    publication: Publication = NOTHING,
    *,
    fenced: bool = True,
) -> Op[Published[Run]]:
    """The operation that moves a run by ``change`` (which raises what it refuses);
    ``fenced``: refused if the run's owner after it was taken over."""

    async def op(conn: Conn) -> Published[Run]:
        rows = await _rows(conn, f"{_SELECT} WHERE run_id = %s FOR UPDATE", (run_id,))
        if not rows:
            raise NotFound(f"no run with id {run_id}")
        run = change(RUNS.load(rows[0]))
        if fenced:
            await fence(conn, {run.owner})
        await conn.execute(
            f"UPDATE runs SET {RUNS.assignments(RUN_CHANGES, '%s')} WHERE run_id = %s",
            (*RUNS.values_of(run, RUN_CHANGES), run_id),
        )
        return await publish(conn, publication, run)

    return op


async def get(conn: Conn, run_id: str) -> Run | None:
    rows = await _rows(conn, f"{_SELECT} WHERE run_id = %s", (run_id,))
    return RUNS.load(rows[0]) if rows else None


async def page(conn: Conn, job_id: str, *, limit: int, before: str | None) -> list[Run]:
    below = None
    if before is not None:
        found = await _rows(conn, "SELECT seq FROM runs WHERE run_id = %s", (before,))
        if not found:
            raise NotFound(f"no run with id {before!r}")
        below = found[0][0]
    rows = await _rows(
        conn,
        f"{_SELECT} WHERE job_id = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
        (job_id, (1 << 63) - 1 if below is None else below, limit),
    )
    return [RUNS.load(r) for r in rows]


async def latest(conn: Conn, job_ids: Sequence[str] | None) -> dict[str, Run]:
    if job_ids is None:
        query = f"{_SELECT} WHERE seq IN (SELECT max(seq) FROM runs GROUP BY job_id)"
        rows = await _rows(conn, query)
    else:
        query = (
            f"{_SELECT} WHERE seq IN (SELECT max(seq) FROM runs "
            "WHERE job_id = ANY(%s) GROUP BY job_id)"
        )
        rows = await _rows(conn, query, (list(job_ids),))
    runs = [RUNS.load(r) for r in rows]
    return {run.job_id: run for run in runs}


async def previous_started(conn: Conn, job_id: str, before_run_id: str) -> Run | None:
    rows = await _rows(
        conn,
        f"{_SELECT} WHERE job_id = %s AND started_at IS NOT NULL "
        "AND seq < coalesce((SELECT seq FROM runs WHERE run_id = %s), 0) "
        "ORDER BY seq DESC LIMIT 1",
        (job_id, before_run_id),
    )
    return RUNS.load(rows[0]) if rows else None


async def latest_with(conn: Conn, job_id: str, status: RunStatus) -> Run | None:
    rows = await _rows(
        conn,
        f"{_SELECT} WHERE job_id = %s AND status = %s ORDER BY seq DESC LIMIT 1",
        (job_id, status.value),
    )
    return RUNS.load(rows[0]) if rows else None


async def last_successes(conn: Conn) -> dict[str, datetime]:
    rows = await _rows(
        conn, "SELECT job_id, max(ended_at) FROM runs WHERE status = 'succeeded' GROUP BY job_id"
    )
    return {job_id: when for job_id, us in rows if (when := from_us(us)) is not None}


async def live(conn: Conn, job_id: str | None) -> list[Run]:
    if job_id is None:
        rows = await _rows(conn, f"{_SELECT} WHERE {LIVE} ORDER BY seq")
    else:
        rows = await _rows(conn, f"{_SELECT} WHERE {LIVE} AND job_id = %s ORDER BY seq", (job_id,))
    return [RUNS.load(r) for r in rows]


async def cancel_requests(conn: Conn, owner: str) -> list[Run]:
    rows = await _rows(
        conn,
        f"{_SELECT} WHERE {LIVE} AND owner = %s AND cancel_requested IS NOT NULL ORDER BY seq",
        (owner,),
    )
    return [RUNS.load(r) for r in rows]


async def count(conn: Conn) -> RunCounts:
    rows = await _rows(conn, "SELECT status, count(*) FROM runs GROUP BY status")
    return RunCounts(by_status=tuple(sorted((RunStatus(s), int(n)) for s, n in rows)))


async def prune(conn: Conn, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
    ended = f"NOT ({LIVE})"
    cutoff = to_us(queued_before)
    doomed = await _rows(conn, f"{_SELECT} WHERE queued_at < %s AND {ended}", (cutoff,))
    doomed += await _rows(
        conn,
        f"SELECT {RUNS.names} FROM (SELECT *, row_number() OVER "
        "(PARTITION BY job_id ORDER BY seq DESC) AS newest FROM runs) ranked "
        f"WHERE newest > %s AND {ended} AND queued_at >= %s",
        (keep_per_job, cutoff),
    )
    runs = [RUNS.load(r) for r in doomed]
    gone = [run.run_id for run in runs]
    if gone:
        await conn.execute("DELETE FROM runs WHERE run_id = ANY(%s)", (gone,))
        await conn.execute("DELETE FROM sessions WHERE run_id = ANY(%s) AND key <> 'main'", (gone,))
    return runs
