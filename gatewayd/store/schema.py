"""The SQLite schema, by version. Migrations only go forward.

``PRAGMA user_version`` holds the version of a store file. Times are integer
microseconds since the Unix epoch, in UTC.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1
    (
        """CREATE TABLE instances (
            instance_id TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            heartbeat_at INTEGER NOT NULL
        )""",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            spec BLOB NOT NULL,
            next_slot INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL,
            job_name TEXT NOT NULL,
            trigger TEXT NOT NULL,
            status TEXT NOT NULL,
            scheduled_for INTEGER,
            queued_at INTEGER NOT NULL,
            started_at INTEGER,
            ended_at INTEGER,
            duration_ms INTEGER,
            exit_code INTEGER,
            error TEXT,
            error_kind TEXT,
            stop_reason TEXT,
            session_key TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            summary TEXT,
            output_tail TEXT,
            owner TEXT,
            pid INTEGER
        )""",
        """CREATE UNIQUE INDEX runs_slot ON runs (job_id, scheduled_for)
            WHERE scheduled_for IS NOT NULL AND trigger != 'retry'""",
        "CREATE INDEX runs_job ON runs (job_id, seq)",
        "CREATE INDEX runs_live ON runs (status) WHERE status IN ('queued', 'running')",
        """CREATE TABLE sessions (
            key TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            job_id TEXT,
            run_id TEXT,
            status TEXT NOT NULL,
            started_at INTEGER,
            ended_at INTEGER,
            runtime_ms INTEGER,
            error TEXT,
            error_kind TEXT,
            stop_reason TEXT
        )""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            stream TEXT NOT NULL,
            body BLOB NOT NULL
        )""",
    ),
    # version 2: process identity (start time) for re-adoption; pruning by age
    (
        "ALTER TABLE runs ADD COLUMN pid_start INTEGER",
        "CREATE INDEX runs_queued_at ON runs (queued_at)",
    ),
    # version 3: event sequence numbers are never reused, even after pruning;
    # sessions are listed by start time. No version wrote events before.
    (
        "DROP TABLE events",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX sessions_started_at ON sessions (started_at)",
    ),
    # version 4: whether a job is enabled, as a column: counted without reading specs
    (
        "ALTER TABLE jobs ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1",
        "UPDATE jobs SET enabled = coalesce(json_extract(spec, '$.enabled'), 1)",
    ),
    # version 5: processes found in a run's group after its command ended;
    # sessions listed in pages, in one order (start time, then key); a row the
    # writer rewrites to learn whether the disk takes writes again after a fault
    (
        "ALTER TABLE runs ADD COLUMN leftovers TEXT",
        "DROP INDEX sessions_started_at",
        "CREATE INDEX sessions_order ON sessions (started_at, key)",
        "CREATE TABLE probe (n INTEGER NOT NULL)",
        "INSERT INTO probe VALUES (0)",
    ),
    # version 6: instances hold leases on the store's clock, with their host and
    # state directory; a durable request to stop a run, for its owner; one id for
    # the main session, for every instance; job changes as events
    (
        "ALTER TABLE instances ADD COLUMN host_id TEXT",
        "ALTER TABLE instances ADD COLUMN state_dir TEXT",
        "ALTER TABLE instances ADD COLUMN lease_until INTEGER",
        "ALTER TABLE instances ADD COLUMN state TEXT NOT NULL DEFAULT 'live'",
        "ALTER TABLE instances ADD COLUMN taken_by TEXT",
        "ALTER TABLE runs ADD COLUMN cancel_requested TEXT",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """INSERT INTO meta (key, value)
            SELECT 'main_session_id', session_id FROM sessions WHERE key = 'main'""",
    ),
    # version 7: alerts, stored before they are delivered, with their attempts
    (
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            sink TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL,
            raised_at INTEGER NOT NULL,
            next_attempt_at INTEGER,
            tries INTEGER NOT NULL,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX alerts_job ON alerts (job_id, raised_at)",
        "CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE state = 'pending'",
    ),
    # version 8: jobs imported from another scheduler, one per origin; their history
    (
        "ALTER TABLE jobs ADD COLUMN origin TEXT",
        "CREATE UNIQUE INDEX jobs_origin ON jobs (origin) WHERE origin IS NOT NULL",
        "ALTER TABLE runs ADD COLUMN imported INTEGER NOT NULL DEFAULT 0",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
