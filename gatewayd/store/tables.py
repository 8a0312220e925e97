"""The SQL stores' tables of fields: how each record is kept, column by column.

SQLite and PostgreSQL keep the same columns: times as integer microseconds
since the epoch, enums by value, JSON documents (a job's spec, a run's
leftovers, an event's body) as the bytes orjson writes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import orjson

from gatewayd.alerting.values import Alert, AlertReason, AlertState
from gatewayd.model import (
    ErrorKind,
    Instance,
    InstanceState,
    Job,
    JobSource,
    JobTiming,
    Leftovers,
    Origin,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StopReason,
    Trigger,
)
from gatewayd.store.sqlrows import Column, Table, enum_column, from_us, time_column
from gatewayd.views import (
    alert_from_json,
    alert_to_json,
    job_from_stored,
    leftovers_from_json,
    leftovers_to_json,
    stored_job_to_json,
)

LIVE = "status IN ('queued', 'running')"


def _leftovers_to_db(value: Leftovers | None) -> bytes | None:
    return None if value is None else orjson.dumps(leftovers_to_json(value))


def _leftovers_from_db(value: bytes | str | None) -> Leftovers | None:
    return None if value is None else leftovers_from_json(orjson.loads(value))


RUNS: Table[Run] = Table(
    "runs",
    Run,
    (
        Column("run_id"),
        Column("job_id"),
        Column("job_name"),
        enum_column("trigger", Trigger),
        enum_column("status", RunStatus),
        time_column("scheduled_for"),
        time_column("queued_at"),
        time_column("started_at"),
        time_column("ended_at"),
        Column("duration_ms"),
        Column("exit_code"),
        Column("error"),
        enum_column("error_kind", ErrorKind),
        enum_column("stop_reason", StopReason),
        Column("session_key"),
        Column("attempt"),
        Column("summary"),
        Column("output_tail"),
        Column("owner"),
        Column("pid"),
        Column("pid_start"),
        Column("leftovers", _leftovers_to_db, _leftovers_from_db),
        enum_column("cancel_requested", StopReason),
        Column("imported", int, bool),
    ),
)
# What a transition changes: everything but what a run is born with.
RUN_CHANGES = (
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "exit_code",
    "error",
    "error_kind",
    "stop_reason",
    "summary",
    "output_tail",
    "owner",
    "pid",
    "pid_start",
    "leftovers",
    "cancel_requested",
)
SESSIONS: Table[Session] = Table(
    "sessions",
    Session,
    (
        Column("key"),
        Column("session_id"),
        Column("job_id"),
        Column("run_id"),
        enum_column("status", SessionStatus),
        time_column("started_at"),
        time_column("ended_at"),
        Column("runtime_ms"),
        Column("error"),
        enum_column("error_kind", ErrorKind),
        enum_column("stop_reason", StopReason),
    ),
)
INSTANCES: Table[Instance] = Table(
    "instances",
    Instance,
    (
        Column("instance_id"),
        Column("pid"),
        Column("host"),
        Column("host_id"),
        Column("state_dir"),
        time_column("started_at"),
        time_column("heartbeat_at"),
        time_column("lease_until"),
        enum_column("state", InstanceState),
        Column("taken_by"),
    ),
)


def _job(
    *,
    id: str,
    source: str,
    spec: bytes,
    next_slot: Any,
    created_at: Any,
    updated_at: Any,
    name: str,
    enabled: int,
    origin: str | None,
) -> Job:
    """A job from its columns: its spec holds what ``name`` and ``enabled`` repeat."""
    return job_from_stored(
        orjson.loads(spec),
        job_id=id,
        source=JobSource(source),
        next_slot=next_slot,
        created_at=created_at,
        updated_at=updated_at,
        origin=None if origin is None else Origin.from_key(origin),
    )


JOBS: Table[Job] = Table(
    "jobs",
    _job,
    (
        Column("id"),
        Column("source", get=lambda job: job.source.value),
        Column("spec", get=lambda job: orjson.dumps(stored_job_to_json(job))),
        time_column("next_slot"),
        time_column("created_at"),
        time_column("updated_at"),
        Column("name"),
        Column("enabled", int),
        Column("origin", get=lambda job: None if job.origin is None else job.origin.key),
    ),
)


def job_filter(
    *, source: JobSource | None, enabled_only: bool, after: str | None, mark: str
) -> tuple[str, list[Any]]:
    """The ``WHERE`` condition and its parameters of a page of jobs (``mark``: ``?``
    for SQLite, ``%s`` for PostgreSQL); see ``JobStore.list_jobs``."""
    where = ["TRUE"]
    params: list[Any] = []
    if source is not None:
        where.append(f"source = {mark}")
        params.append(source.value)
    if enabled_only:
        where.append("enabled = 1")
    if after is not None:
        where.append(f"name > {mark}")
        params.append(after)
    return " AND ".join(where), params


def timing_from_row(row: Sequence[Any]) -> JobTiming:
    """What the timer needs of a job, from ``id, next_slot, enabled, stagger, kind``
    (the spec's stagger and schedule kind, read by each store's JSON functions)."""
    job_id, slot, enabled, stagger, kind = row
    return JobTiming(
        job_id=job_id,
        next_slot=from_us(slot),
        enabled=bool(enabled),
        stagger_s=float(stagger or 0),
        one_shot=kind == "at",
    )


def job_from_row(row: Sequence[Any]) -> Job:
    """A job from a row of ``JOBS.names``; a row read again is decoded once."""
    return _cached_job(tuple(row))


def jobs_from_rows(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """Many jobs at once: decoded without the cache, which they would only flush."""
    return [JOBS.load(r) for r in rows]


@functools.lru_cache(maxsize=1024)  # bounded: each cached job is objects for the GC to scan
def _cached_job(row: tuple[Any, ...]) -> Job:
    return JOBS.load(row)


def _alert(
    *,
    alert_id: str,
    job_id: str,
    sink: str,
    reason: AlertReason,
    state: AlertState,
    raised_at: Any,
    next_attempt_at: Any,
    tries: int,
    body: bytes | str,
) -> Alert:
    """An alert from its columns: its body holds the rest (``state`` and ``next_attempt_at``
    are the columns', which taking an alert to try it moves alone)."""
    alert = alert_from_json(orjson.loads(body))
    return dataclasses.replace(alert, state=state, next_attempt_at=next_attempt_at)


ALERTS: Table[Alert] = Table(
    "alerts",
    _alert,
    (
        Column("alert_id"),
        Column("job_id"),
        Column("sink"),
        enum_column("reason", AlertReason),
        enum_column("state", AlertState),
        time_column("raised_at"),
        time_column("next_attempt_at"),
        Column("tries", get=lambda alert: len(alert.attempts)),
        Column("body", get=lambda alert: orjson.dumps(alert_to_json(alert))),
    ),
)
