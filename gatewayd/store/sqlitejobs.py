"""The SQLite store's operations on jobs: each runs on a connection, inside a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gatewayd.errors import Conflict, NameTaken, NotFound
from gatewayd.model import Job, JobSource, JobTiming, Run
from gatewayd.store.base import Publication
from gatewayd.store.sqliteevents import publish
from gatewayd.store.tables import (
    JOBS,
    LIVE,
    RUNS,
    job_filter,
    job_from_row,
    jobs_from_rows,
    timing_from_row,
)
from gatewayd.store.threads import Published, savepoint
from gatewayd.store.values import check_origins_apart, origin_taken

_INSERT = f"INSERT INTO jobs ({JOBS.names}) VALUES ({JOBS.marks})"
_INSERT_RUN = f"INSERT INTO runs ({RUNS.names}) VALUES ({RUNS.marks})"


def _name_taken(conn: sqlite3.Connection, job: Job) -> NameTaken:
    row = conn.execute("SELECT id FROM jobs WHERE name = ?", (job.name,)).fetchone()
    holder = row[0] if row else "another job"
    return NameTaken(f"the name {job.name!r} is taken by job {holder}", data={"name": job.name})


def add(
    conn: sqlite3.Connection,
    jobs: Sequence[Job],
    publication: Publication,
    history: Sequence[Run] = (),
) -> Published[None]:
    check_origins_apart(jobs)
    try:
        with savepoint(conn):  # undone before the clash is looked for
            conn.executemany(_INSERT, [JOBS.values(job) for job in jobs])
            conn.executemany(_INSERT_RUN, [RUNS.values(run) for run in history])
    except sqlite3.IntegrityError:
        for job in jobs:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                raise Conflict(f"a job with id {job.id} exists") from None
            if conn.execute("SELECT 1 FROM jobs WHERE name = ?", (job.name,)).fetchone():
                raise _name_taken(conn, job) from None
            origin = None if job.origin is None else job.origin.key
            if origin and conn.execute("SELECT 1 FROM jobs WHERE origin = ?", (origin,)).fetchone():
                raise origin_taken(job) from None
        raise
    return publish(conn, publication, None)


def update(conn: sqlite3.Connection, job: Job, publication: Publication) -> Published[None]:
    changed = [c.name for c in JOBS.columns if c.name != "id"]
    try:
        cursor = conn.execute(
            f"UPDATE jobs SET {JOBS.assignments(changed)} WHERE id = ?",
            (*JOBS.values_of(job, changed), job.id),
        )
    except sqlite3.IntegrityError:
        raise _name_taken(conn, job) from None
    if cursor.rowcount == 0:
        raise NotFound(f"no job with id {job.id}")
    return publish(conn, publication, None)


def delete(conn: sqlite3.Connection, job_id: str, publication: Publication) -> Published[None]:
    if conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
        raise NotFound(f"no job with id {job_id}")
    return publish(conn, publication, None)


def delete_idle(conn: sqlite3.Connection, job_id: str, publication: Publication) -> Published[bool]:
    cursor = conn.execute(
        f"DELETE FROM jobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM runs "
        f"WHERE job_id = ? AND {LIVE})",
        (job_id, job_id),
    )
    if cursor.rowcount == 0:
        return Published(False, [])
    return publish(conn, publication, True)


def get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {JOBS.names} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return job_from_row(row) if row else None


def find(conn: sqlite3.Connection, ref: str) -> Job | None:
    row = conn.execute(
        f"SELECT {JOBS.names} FROM jobs WHERE id = ? "
        f"UNION ALL SELECT {JOBS.names} FROM jobs WHERE name = ? LIMIT 1",
        (ref, ref),
    ).fetchone()
    return job_from_row(row) if row else None


def count(conn: sqlite3.Connection) -> tuple[int, int]:
    total, enabled = conn.execute("SELECT count(*), coalesce(sum(enabled), 0) FROM jobs").fetchone()
    return int(total), int(enabled)


def page(
    conn: sqlite3.Connection,
    *,
    source: JobSource | None,
    enabled_only: bool,
    after: str | None,
    limit: int | None,
) -> list[Job]:
    where, params = job_filter(source=source, enabled_only=enabled_only, after=after, mark="?")
    params.append(-1 if limit is None else limit)
    rows = conn.execute(
        f"SELECT {JOBS.names} FROM jobs WHERE {where} ORDER BY name LIMIT ?", params
    ).fetchall()
    return jobs_from_rows(rows)


def timings(conn: sqlite3.Connection) -> list[JobTiming]:
    rows = conn.execute(
        "SELECT id, next_slot, enabled, "
        "json_extract(spec, '$.stagger_s'), json_extract(spec, '$.schedule.kind') "
        "FROM jobs"
    ).fetchall()
    return [timing_from_row(row) for row in rows]
