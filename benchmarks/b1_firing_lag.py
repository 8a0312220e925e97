"""B1: firing lag, gatewayd beside APScheduler 3.11 (memory and SQLAlchemy/SQLite stores).

N one-shot jobs are due across a window (1,000 over 2 s and 10,000 over 20 s:
500 fires per second). Each job execs the same tiny command, which records its
own start time and the slot it was scheduled for::

    sh -c 'echo "$(date +%s.%N) $GATEWAYD_SCHEDULED_FOR"'

The lag is that start time minus the slot. gatewayd runs as a real daemon
(durable: every run is recorded before it starts); APScheduler runs the same
schedule with ``AsyncIOScheduler`` and a coroutine job that spawns the same
command. The in-process variant compares a gatewayd ``system_event`` run (lag:
its recorded start minus its slot, in microseconds, read from the store file)
with an APScheduler coroutine job (lag: the coroutine's start minus its run date).

    .venv/bin/python -m benchmarks.b1_firing_lag [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from gatewayd.durations import format_time, parse_time
from gatewayd.paths import DB_NAME

from benchmarks.common import AsyncClient, daemon, lag_summary_line, summarise, table

COMMAND = 'echo "$(date +%s.%N) $GATEWAYD_SCHEDULED_FOR"'
CONFIG = """
[gateway]
max_concurrent_runs = 512
log_level = "warning"
[scheduler]
misfire_grace = "1h"
"""
BATCH = 5_000


def now() -> datetime:
    return datetime.now(UTC)


def slots(n: int, window_s: float, lead_s: float) -> list[datetime]:
    start = now() + timedelta(seconds=lead_s)
    start = start.replace(microsecond=(start.microsecond // 1000) * 1000)
    return [start + timedelta(milliseconds=round(i * window_s * 1000 / n)) for i in range(n)]


def lags_from_logs(runs_dir: Path) -> list[float]:
    """Milliseconds from each slot to the command's own start, read from its output."""
    lags = []
    for log in runs_dir.rglob("*.log"):
        text = log.read_text().split()
        if len(text) >= 2:
            started = float(text[0])
            lags.append((started - parse_time(text[1]).timestamp()) * 1000)
    return lags


def recorded_lags(db: Path) -> list[float]:
    """Milliseconds from each slot to the run's recorded start, read from the store itself.

    The store keeps microseconds (the JSON of the API, milliseconds).
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT started_at - scheduled_for FROM runs WHERE started_at IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return [micros / 1000 for (micros,) in rows]


# --- gatewayd -------------------------------------------------------------------------


async def gatewayd_run(
    n: int, window_s: float, *, exec_jobs: bool, grace_s: float = 120.0
) -> dict[str, Any]:
    with daemon(CONFIG) as d:
        client = await AsyncClient.connect(d.socket_path)
        lead = 3.0 + n / 5000
        times = slots(n, window_s, lead)
        payload: dict[str, Any] = (
            {"kind": "exec", "shell": COMMAND}
            if exec_jobs
            else {"kind": "system_event", "text": "tick"}
        )
        specs = [
            {"name": f"b{i}", "schedule": {"kind": "at", "at": format_time(t)}, "payload": payload}
            for i, t in enumerate(times)
        ]
        added = time.perf_counter()
        for first in range(0, n, BATCH):
            await client.call("cron.add_many", {"jobs": specs[first : first + BATCH]})
        add_s = time.perf_counter() - added
        if now() > times[0]:
            raise RuntimeError("adding the jobs took longer than the lead time")
        deadline = times[-1] + timedelta(seconds=grace_s)
        while True:
            status = await client.call("gateway.status")
            by_status = status["runs"]["by_status"]
            ended = sum(v for k, v in by_status.items() if k not in ("queued", "running"))
            if ended >= n or now() > deadline:
                break
            await asyncio.sleep(0.5)
        if exec_jobs:
            lags = lags_from_logs(d.state_dir / "runs")
        else:
            lags = recorded_lags(d.state_dir / DB_NAME)
        failed = sum(v for k, v in by_status.items() if k not in ("succeeded",))
        await client.close()
    return {"lags": lags, "add_s": add_s, "failed": failed}


# --- APScheduler ----------------------------------------------------------------------


def finished(directory: Path) -> int:
    return sum(1 for p in directory.glob("*.log") if p.stat().st_size)


OUT: dict[str, Path] = {}
SEEN: list[float] = []


async def ap_exec_job(index: int, scheduled_iso: str) -> None:
    path = OUT["dir"] / f"{index}.log"
    with path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            COMMAND,
            stdout=out,
            env={**os.environ, "GATEWAYD_SCHEDULED_FOR": scheduled_iso},
        )
    await process.wait()


async def ap_inprocess_job(scheduled_ts: float) -> None:
    SEEN.append((time.time() - scheduled_ts) * 1000)


async def apscheduler_run(
    n: int, window_s: float, *, store: str, exec_jobs: bool, grace_s: float = 120.0
) -> dict[str, Any]:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    with tempfile.TemporaryDirectory(prefix="apbench") as tmp:
        OUT["dir"] = Path(tmp)
        SEEN.clear()
        jobstore: Any = (
            MemoryJobStore()
            if store == "memory"
            else SQLAlchemyJobStore(url=f"sqlite:///{tmp}/jobs.sqlite")
        )
        scheduler = AsyncIOScheduler(
            jobstores={"default": jobstore},
            job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 1},
        )
        lead = 3.0 + (n * 3.0 / 1000 if store == "sqlite" else n / 5000)
        times = slots(n, window_s, lead)
        scheduler.start()
        added = time.perf_counter()
        for i, t in enumerate(times):
            if exec_jobs:
                args: list[Any] = [i, format_time(t)]
                func: Any = ap_exec_job
            else:
                args = [t.timestamp()]
                func = ap_inprocess_job
            scheduler.add_job(func, "date", run_date=t, args=args, id=str(i))
        add_s = time.perf_counter() - added
        if now() > times[0]:
            raise RuntimeError(f"adding {n} jobs to APScheduler took {add_s:.1f}s, past the lead")
        deadline = time.monotonic() + (times[-1] - now()).total_seconds() + grace_s
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(finished, Path(tmp)) if exec_jobs else len(SEEN)
            if done >= n:
                break
            await asyncio.sleep(0.5)
        scheduler.shutdown(wait=False)
        lags = lags_from_logs(Path(tmp)) if exec_jobs else list(SEEN)
    return {"lags": lags, "add_s": add_s, "failed": n - len(lags)}


# --- report ---------------------------------------------------------------------------


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = [(1000, 2.0)] if quick else [(1000, 2.0), (10_000, 20.0)]
    rows = []
    for n, window in sizes:
        cases: list[tuple[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]]] = [
            ("gatewayd exec (durable)", partial(gatewayd_run, n, window, exec_jobs=True)),
            (
                "APScheduler memory",
                partial(apscheduler_run, n, window, store="memory", exec_jobs=True),
            ),
            (
                "APScheduler SQLite",
                partial(apscheduler_run, n, window, store="sqlite", exec_jobs=True),
            ),
            ("gatewayd system_event", partial(gatewayd_run, n, window, exec_jobs=False)),
            (
                "APScheduler coroutine",
                partial(apscheduler_run, n, window, store="memory", exec_jobs=False),
            ),
        ]
        for label, case in cases:
            result = asyncio.run(case())
            stats = summarise(result["lags"])
            rows.append(
                [
                    label,
                    n,
                    f"{n / window:.0f}/s",
                    stats["p50"],
                    stats["p99"],
                    stats["max"],
                    result["add_s"],
                    result["failed"],
                ]
            )
            key = label.split()[0].lower() + "_" + label.split()[1].lower()
            lag_summary_line("b1", key, n, stats, add_s=result["add_s"], missing=result["failed"])
    print()
    table(["scheduler", "jobs", "rate", "p50 ms", "p99 ms", "max ms", "add s", "not ok"], rows)


if __name__ == "__main__":
    main()
