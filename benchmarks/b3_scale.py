"""B3: scale to 100,000 jobs and 1,000,000 run records.

Reported: the time to add 100,000 jobs through ``cron.add_many``; the start-up
time to READY with those jobs and 1,000,000 run records in the store; the RSS
after start; the latency of ``gatewayd cron list --json`` (a whole CLI process);
and the event-loop lag p99 (``gateway.probe_lag``) while jobs fire at 500/s.

The 1,000,000 runs are written straight into the store file (ended runs spread
over the jobs), which is what a long-lived daemon's history looks like.

    .venv/bin/python -m benchmarks.b3_scale [JOBS] [RUNS]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gatewayd.durations import format_time
from gatewayd.testing import DaemonProcess, run_cli

from benchmarks.common import AsyncClient, rss_mib, summary_line, table

CONFIG = """
[gateway]
log_level = "warning"
max_concurrent_runs = 512
[scheduler]
misfire_grace = "1h"
"""
BATCH = 5_000
FIRING = 2000
# Adding the jobs, writing the history and restarting must fit in this lead.
LEAD_S = 120.0


def spec(i: int, first: datetime) -> dict[str, Any]:
    # The first 2,000 jobs fire at 500/s from `first` (after the restart), so that
    # the lag can be probed while firing; the rest a day later, spread out.
    if i < FIRING:
        at = first + timedelta(milliseconds=2 * i)
    else:
        at = first + timedelta(days=1, seconds=i)
    return {
        "name": f"job{i:06d}",
        "schedule": {"kind": "at", "at": format_time(at)},
        "payload": {"kind": "system_event", "text": f"job {i}"},
    }


def write_history(db: Path, runs: int) -> None:
    """Append ``runs`` ended runs, spread over the jobs, straight into the store."""
    conn = sqlite3.connect(db)
    job_ids = [r[0] for r in conn.execute("SELECT id FROM jobs")]
    start_us = int((datetime.now(UTC) - timedelta(days=7)).timestamp() * 1_000_000)
    rows = (
        (
            f"hist{n:012d}",
            job_ids[n % len(job_ids)],
            "job",
            "manual",
            "succeeded",
            start_us + n * 1000,
            start_us + n * 1000,
            start_us + n * 1000 + 5000,
            5,
            0,
            f"cron:{job_ids[n % len(job_ids)]}:run:hist{n:012d}",
            1,
        )
        for n in range(runs)
    )
    conn.executemany(
        "INSERT INTO runs (run_id, job_id, job_name, trigger, status, queued_at, started_at, "
        "ended_at, duration_ms, exit_code, session_key, attempt) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()


async def add_jobs(path: Path, jobs: int, first: datetime) -> float:
    client = await AsyncClient.connect(path)
    started = time.perf_counter()
    for start in range(0, jobs, BATCH):
        batch = [spec(i, first) for i in range(start, min(jobs, start + BATCH))]
        await client.call("cron.add_many", {"jobs": batch})
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def probe(path: Path, seconds: float) -> dict[str, Any]:
    client = await AsyncClient.connect(path)
    lag: dict[str, Any] = await client.call("gateway.probe_lag", {"seconds": seconds})
    status = await client.call("gateway.status")
    await client.close()
    lag["runs"] = status["runs"]["total"]
    return lag


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="gwscale") as tmp:
        d = DaemonProcess(Path(tmp) / "state", config=CONFIG, ready_timeout=300)
        try:
            d.start()
            first = datetime.now(UTC) + timedelta(seconds=LEAD_S)
            add_s = asyncio.run(add_jobs(d.socket_path, jobs, first))
            assert d.stop() == 0
            write_history(Path(tmp) / "state" / "gatewayd.db", runs)
            started = time.perf_counter()
            d.start()
            ready_s = time.perf_counter() - started
            rss = rss_mib(d.pid)
            listed = time.perf_counter()
            result = run_cli(["cron", "list", "--json"], env=d.env(), timeout=600)
            list_s = time.perf_counter() - listed
            assert result.code == 0, result.stderr
            count = len(result.json())
            wait = (first - datetime.now(UTC)).total_seconds()
            if wait < 0:
                raise RuntimeError("the set-up took longer than the lead: raise LEAD_S")
            time.sleep(wait)
            lag = asyncio.run(probe(d.socket_path, 4.0))
            rss_after = rss_mib(d.pid)
        finally:
            d.close()
    print()
    table(
        [
            "jobs",
            "runs",
            "add s",
            "ready s",
            "rss MiB",
            "list s",
            "listed",
            "lag p99 ms",
            "rss after",
        ],
        [
            [
                jobs,
                runs,
                add_s,
                ready_s,
                rss,
                list_s,
                count,
                lag.get("p99_ms", float("nan")),
                rss_after,
            ]
        ],
    )
    summary_line(
        "b3",
        jobs=jobs,
        runs=runs,
        add_s=add_s,
        ready_s=ready_s,
        rss_mib=rss,
        list_s=list_s,
        lag_p99_ms=float(lag.get("p99_ms", float("nan"))),
        lag_max_ms=float(lag.get("max_ms", float("nan"))),
        rss_after_mib=rss_after,
    )


if __name__ == "__main__":
    main()
