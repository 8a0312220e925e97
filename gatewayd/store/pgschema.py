"""The PostgreSQL schema, by version. Migrations only go forward.

Every table lives in the cluster's own schema (``[store] schema``), so that
several clusters can share one database; ``schema_version`` holds its version.
Columns are those of the SQLite store (:mod:`gatewayd.store.tables`): times
are integer microseconds since the epoch, JSON documents are ``jsonb``, and
names sort by their bytes (``COLLATE "C"``), as SQLite sorts them.
Migrations run under an advisory lock, so that instances starting together
migrate once.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1: the records of SQLite's version 6, with job claims and an event counter
    (
        """CREATE TABLE instances (
            instance_id text PRIMARY KEY,
            pid integer NOT NULL,
            host text NOT NULL,
            host_id text,
            state_dir text,
            started_at bigint NOT NULL,
            heartbeat_at bigint NOT NULL,
            lease_until bigint,
            state text NOT NULL DEFAULT 'live',
            taken_by text
        )""",
        """CREATE TABLE jobs (
            id text PRIMARY KEY,
            name text COLLATE "C" NOT NULL UNIQUE,
            source text NOT NULL,
            spec jsonb NOT NULL,
            next_slot bigint,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            enabled integer NOT NULL DEFAULT 1,
            claimed_by text,
            claimed_until bigint
        )""",
        "CREATE INDEX jobs_due ON jobs (next_slot) WHERE enabled = 1",
        """CREATE TABLE runs (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text NOT NULL UNIQUE,
            job_id text NOT NULL,
            job_name text NOT NULL,
            trigger text NOT NULL,
            status text NOT NULL,
            scheduled_for bigint,
            queued_at bigint NOT NULL,
            started_at bigint,
            ended_at bigint,
            duration_ms bigint,
            exit_code integer,
            error text,
            error_kind text,
            stop_reason text,
            session_key text NOT NULL,
            attempt integer NOT NULL,
            summary text,
            output_tail text,
            owner text,
            pid integer,
            pid_start bigint,
            leftovers jsonb,
            cancel_requested text
        )""",
        """CREATE UNIQUE INDEX runs_slot ON runs (job_id, scheduled_for)
            WHERE scheduled_for IS NOT NULL AND trigger <> 'retry'""",
        "CREATE INDEX runs_job ON runs (job_id, seq)",
        "CREATE INDEX runs_live ON runs (status) WHERE status IN ('queued', 'running')",
        "CREATE INDEX runs_queued_at ON runs (queued_at)",
        """CREATE TABLE sessions (
            key text COLLATE "C" PRIMARY KEY,
            session_id text NOT NULL,
            job_id text,
            run_id text,
            status text NOT NULL,
            started_at bigint,
            ended_at bigint,
            runtime_ms bigint,
            error text,
            error_kind text,
            stop_reason text
        )""",
        "CREATE INDEX sessions_order ON sessions (started_at, key)",
        "CREATE TABLE events (seq bigint PRIMARY KEY, body jsonb NOT NULL)",
        # The last event seq given: its row is locked until the giver commits (see pgevents).
        "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('events', 0)",
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    ),
    # version 2: alerts, stored before they are delivered, with their attempts
    (
        """CREATE TABLE alerts (
            alert_id text PRIMARY KEY,
            job_id text NOT NULL,
            sink text NOT NULL,
            reason text NOT NULL,
            state text NOT NULL,
            raised_at bigint NOT NULL,
            next_attempt_at bigint,
            tries integer NOT NULL,
            body jsonb NOT NULL
        )""",
        "CREATE INDEX alerts_job ON alerts (job_id, raised_at)",
        "CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE state = 'pending'",
    ),
    # version 3: jobs imported from another scheduler, one per origin; their history
    (
        "ALTER TABLE jobs ADD COLUMN origin text",
        "CREATE UNIQUE INDEX jobs_origin ON jobs (origin) WHERE origin IS NOT NULL",
        "ALTER TABLE runs ADD COLUMN imported integer NOT NULL DEFAULT 0",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
