"""B7: what the store's check at start costs, with 1,000,000 runs.

It builds a store of N runs (each with its isolated session and a short output
tail) through gatewayd's own schema, then times ``check_file`` (the header, the
schema version and ``PRAGMA quick_check``: what ``serve`` runs before any
write), warm (the file in the page cache) and cold (the cache dropped: needs
root; skipped otherwise), beside a full ``PRAGMA integrity_check``.

    .venv/bin/python -m benchmarks.b7_store_check [N]
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gatewayd.store.schema import MIGRATIONS, SCHEMA_VERSION
from gatewayd.store.sqlitefile import check_file, connect_read_only

from benchmarks.common import summary_line, table

TAIL = "a line of output\n" * 8


def build(path: Path, runs: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in MIGRATIONS:
        for statement in version:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("BEGIN")
    for n in range(runs):
        job = f"job{n % 1000:07d}"
        key = f"cron:{job}:run:r{n:015d}"
        conn.execute(
            "INSERT INTO runs (run_id, job_id, job_name, trigger, status, scheduled_for, "
            "queued_at, started_at, ended_at, duration_ms, exit_code, session_key, attempt, "
            "output_tail, owner, pid) VALUES (?, ?, 'job', 'schedule', 'succeeded', ?, ?, ?, "
            "?, 5, 0, ?, 1, ?, 'instance', 1000)",
            (f"r{n:015d}", job, n * 10**6, n * 10**6, n * 10**6 + 1, n * 10**6 + 5, key, TAIL),
        )
        conn.execute(
            "INSERT INTO sessions (key, session_id, job_id, run_id, status, started_at, "
            "ended_at, runtime_ms) VALUES (?, ?, ?, ?, 'done', ?, ?, 5)",
            (key, f"s{n}", job, f"r{n:015d}", n, n + 5),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def integrity_check(path: Path) -> None:
    conn = connect_read_only(path)
    try:
        conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="gwcheck") as tmp:
        path = Path(tmp) / "gatewayd.db"
        build_s = timed(lambda: build(path, runs))
        size_mb = path.stat().st_size / 1e6
        check_file(path)  # into the page cache
        warm = min(timed(lambda: check_file(path)) for _ in range(3))
        cold = timed(lambda: check_file(path)) if drop_caches() else float("nan")
        full = timed(lambda: integrity_check(path))
    table(
        ["runs", "store MB", "check warm s", "check cold s", "integrity_check warm s"],
        [[runs, size_mb, warm, cold, full]],
    )
    summary_line(
        "b7",
        runs=runs,
        size_mb=size_mb,
        build_s=build_s,
        check_warm_s=warm,
        check_cold_s=cold,
        integrity_check_s=full,
    )


if __name__ == "__main__":
    main()
