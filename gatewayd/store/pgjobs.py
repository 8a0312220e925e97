"""The PostgreSQL store's operations on jobs: each runs on a connection, inside a transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg.errors

from gatewayd.errors import Conflict, NameTaken, NotFound
from gatewayd.model import Job, JobSource, JobTiming, Run
from gatewayd.store.base import Publication
from gatewayd.store.pgaccess import Conn
from gatewayd.store.pgevents import publish
from gatewayd.store.pginstances import NOW_US
from gatewayd.store.sqlrows import to_us
from gatewayd.store.tables import (
    JOBS,
    LIVE,
    RUNS,
    job_filter,
    job_from_row,
    jobs_from_rows,
    timing_from_row,
)
from gatewayd.store.threads import Published
from gatewayd.store.values import Due, DueClaims, check_origins_apart, origin_taken

_INSERT = f"INSERT INTO jobs ({JOBS.names}) VALUES ({JOBS.placeholders('%s')})"
_INSERT_RUN = f"INSERT INTO runs ({RUNS.names}) VALUES ({RUNS.placeholders('%s')})"
_SELECT = f"SELECT {JOBS.names} FROM jobs"
_TIMING = "id, next_slot, enabled, spec->>'stagger_s', spec->'schedule'->>'kind'"
# The jobs asked for whose slot is as seen and whose claim is free, lapsed or
# ours; rows another transaction has locked (claiming, recording or editing the
# job) are skipped, not waited for.
_CLAIM = f"""
    WITH wanted AS (SELECT * FROM unnest(%s::text[], %s::bigint[]) AS w (id, slot)),
    free AS (
        SELECT jobs.id FROM jobs JOIN wanted ON jobs.id = wanted.id
        WHERE jobs.enabled = 1 AND jobs.next_slot IS NOT DISTINCT FROM wanted.slot
            AND (jobs.claimed_by IS NULL OR jobs.claimed_by = %s
                 OR jobs.claimed_until <= {NOW_US})
        ORDER BY jobs.id
        FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE jobs SET claimed_by = %s, claimed_until = {NOW_US} + %s
    FROM free WHERE jobs.id = free.id
    RETURNING jobs.id"""
# A job skipped because another transaction holds its row, with no claim yet
# to say for how long, is looked at again this much later.
BUSY_LOOK_AGAIN_S = 0.2


async def _one(conn: Conn, query: str, params: tuple[Any, ...]) -> Any:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


async def _name_taken(conn: Conn, job: Job) -> NameTaken:
    row = await _one(conn, "SELECT id FROM jobs WHERE name = %s", (job.name,))
    holder = row[0] if row else "another job"
    return NameTaken(f"the name {job.name!r} is taken by job {holder}", data={"name": job.name})


async def add(
    conn: Conn,
    jobs: Sequence[Job],
    publication: Publication,
    history: Sequence[Run] = (),
) -> Published[None]:
    check_origins_apart(jobs)
    try:
        async with (
            conn.transaction(),
            conn.cursor() as cursor,
        ):  # undone before the clash is looked for
            await cursor.executemany(_INSERT, [JOBS.values(job) for job in jobs])
            if history:
                await cursor.executemany(_INSERT_RUN, [RUNS.values(run) for run in history])
    except psycopg.errors.UniqueViolation:
        for job in jobs:
            if await _one(conn, "SELECT 1 FROM jobs WHERE id = %s", (job.id,)):
                raise Conflict(f"a job with id {job.id} exists") from None
            if await _one(conn, "SELECT 1 FROM jobs WHERE name = %s", (job.name,)):
                raise await _name_taken(conn, job) from None
            origin = None if job.origin is None else job.origin.key
            if origin and await _one(conn, "SELECT 1 FROM jobs WHERE origin = %s", (origin,)):
                raise origin_taken(job) from None
        seen: dict[str, str] = {}
        for job in jobs:  # a clash within the jobs given
            if job.id in seen.values():
                raise Conflict(f"a job with id {job.id} exists") from None
            if job.name in seen:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {seen[job.name]}",
                    data={"name": job.name},
                ) from None
            seen[job.name] = job.id
        raise
    return await publish(conn, publication, None)


async def update(conn: Conn, job: Job, publication: Publication) -> Published[None]:
    changed = [c.name for c in JOBS.columns if c.name != "id"]
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                f"UPDATE jobs SET {JOBS.assignments(changed, '%s')}, "
                "claimed_by = NULL, claimed_until = NULL WHERE id = %s",
                (*JOBS.values_of(job, changed), job.id),
            )
    except psycopg.errors.UniqueViolation:
        raise await _name_taken(conn, job) from None
    if cursor.rowcount == 0:
        raise NotFound(f"no job with id {job.id}")
    return await publish(conn, publication, None)


async def delete(conn: Conn, job_id: str, publication: Publication) -> Published[None]:
    cursor = await conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
    if cursor.rowcount == 0:
        raise NotFound(f"no job with id {job_id}")
    return await publish(conn, publication, None)


async def delete_idle(conn: Conn, job_id: str, publication: Publication) -> Published[bool]:
    # The job's row is locked first: a run recorded meanwhile (which locks it too) waits.
    if not await _one(conn, "SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,)):
        return Published(False, [])
    if await _one(conn, f"SELECT 1 FROM runs WHERE job_id = %s AND {LIVE} LIMIT 1", (job_id,)):
        return Published(False, [])
    await conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
    return await publish(conn, publication, True)


async def get(conn: Conn, job_id: str) -> Job | None:
    row = await _one(conn, f"{_SELECT} WHERE id = %s", (job_id,))
    return job_from_row(row) if row else None


async def find(conn: Conn, ref: str) -> Job | None:
    row = await _one(
        conn,
        f"({_SELECT} WHERE id = %s) UNION ALL ({_SELECT} WHERE name = %s) LIMIT 1",
        (ref, ref),
    )
    return job_from_row(row) if row else None


async def count(conn: Conn) -> tuple[int, int]:
    total, enabled = await _one(conn, "SELECT count(*), coalesce(sum(enabled), 0) FROM jobs", ())
    return int(total), int(enabled)


async def page(
    conn: Conn,
    *,
    source: JobSource | None,
    enabled_only: bool,
    after: str | None,
    limit: int | None,
) -> list[Job]:
    where, params = job_filter(source=source, enabled_only=enabled_only, after=after, mark="%s")
    params.append(limit)  # NULL: no limit
    cursor = await conn.execute(f"{_SELECT} WHERE {where} ORDER BY name LIMIT %s", params)
    return jobs_from_rows(await cursor.fetchall())


async def timings(conn: Conn) -> list[JobTiming]:
    cursor = await conn.execute(f"SELECT {_TIMING} FROM jobs")
    return [timing_from_row(row) for row in await cursor.fetchall()]


async def claim(conn: Conn, due: Sequence[Due], by: str, hold_s: float) -> DueClaims:
    ids = [d.job_id for d in due]
    slots = [to_us(d.next_slot) for d in due]
    cursor = await conn.execute(_CLAIM, (ids, slots, by, by, round(hold_s * 1e6)))
    mine = {job_id for (job_id,) in await cursor.fetchall()}
    rest = [d for d in due if d.job_id not in mine]
    if not rest:
        return DueClaims(mine=tuple(mine))
    cursor = await conn.execute(
        f"SELECT {_TIMING}, claimed_by, claimed_until - {NOW_US} FROM jobs WHERE id = ANY(%s)",
        ([d.job_id for d in rest],),
    )
    found = {row[0]: row for row in await cursor.fetchall()}
    moved: list[JobTiming] = []
    held: list[tuple[str, float]] = []
    for d in rest:
        row = found.get(d.job_id)
        if row is None:
            continue
        *timing_row, holder, lapses_in_us = row  # the timing's columns, then the claim's
        timing = timing_from_row(timing_row)
        if not timing.enabled or timing.next_slot != d.next_slot:
            moved.append(timing)
        elif holder not in (None, by) and lapses_in_us > 0:
            held.append((d.job_id, lapses_in_us / 1e6))
        else:
            held.append((d.job_id, BUSY_LOOK_AGAIN_S))
    gone = tuple(d.job_id for d in rest if d.job_id not in found)
    return DueClaims(mine=tuple(mine), moved=tuple(moved), held=tuple(held), gone=gone)
