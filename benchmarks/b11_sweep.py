"""B11: exec fires per second, swept, and a burst, beside APScheduler 3.11 (memory and SQLite).

The same one-shot schedule and command as B1 (``sh -c 'echo "$(date +%s.%N)
$GATEWAYD_SCHEDULED_FOR"'``), with the same lag: the command's own start time
minus its slot. For each rate (100 to 500 fires per second, for 10 s each),
gatewayd (a real daemon: every run recorded before it starts), then
APScheduler with its memory store, then with SQLAlchemy on SQLite, one after
another in this one process. Then the burst: 1,000 jobs due in the same
instant, where the figure is when the last command started.

A rate is *held* when every run started, and the p99 lag is at most 50 ms.

    .venv/bin/python -m benchmarks.b11_sweep [RATES] [SECONDS] [BURST]
    .venv/bin/python -m benchmarks.b11_sweep 100,200,300,400,500 10 1000
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import orjson

from benchmarks.b1_firing_lag import apscheduler_run, gatewayd_run
from benchmarks.common import lag_summary_line, summarise, table

HELD_P99_MS = 50.0
# How long after its last slot a scheduler that fell behind is waited for: what has
# not started by then counts as missing.
GRACE_S = 30.0
Case = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


SCHEDULERS = ("gatewayd", "APScheduler memory", "APScheduler SQLite")


def case(label: str, n: int, window_s: float) -> Case:
    if label == "gatewayd":
        return partial(gatewayd_run, n, window_s, exec_jobs=True, grace_s=GRACE_S)
    store = "memory" if label.endswith("memory") else "sqlite"
    return partial(apscheduler_run, n, window_s, store=store, exec_jobs=True, grace_s=GRACE_S)


def one(label: str, n: int, window_s: float) -> dict[str, Any]:
    """One case, in a process of its own: no scheduler's leftovers reach the next."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.b11_sweep", "--one", label, str(n), str(window_s)],
        capture_output=True,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith(b"{")]
    if not lines:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return {"lags": [], "failed": n, "error": " ".join(tail)}
    result: dict[str, Any] = orjson.loads(lines[-1])
    return result


def _run_one(label: str, n: int, window_s: float) -> None:
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    result = asyncio.run(case(label, n, window_s)())
    print(orjson.dumps({"lags": result["lags"], "failed": result["failed"]}).decode())


def _stats(lags: list[float]) -> dict[str, float]:
    """p50, p99 and max of the lags; not-a-number when nothing started."""
    return summarise(lags) if lags else dict.fromkeys(("p50", "p99", "max"), float("nan"))


def _missing(label: str, n: int, result: dict[str, Any]) -> int:
    extra = result["failed"] if label == "gatewayd" else 0
    return n - len(result["lags"]) + extra


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        _run_one(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    rates = [
        int(r) for r in (sys.argv[1] if len(sys.argv) > 1 else "100,200,300,400,500").split(",")
    ]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    burst = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rows: list[list[Any]] = []
    held: dict[str, int] = {}
    for rate in rates:
        n = int(rate * seconds)
        for label in SCHEDULERS:
            result = one(label, n, seconds)
            stats = _stats(result["lags"])
            missing = _missing(label, n, result)
            ok = missing == 0 and stats["p99"] <= HELD_P99_MS
            if ok:
                held[label] = max(held.get(label, 0), rate)
            note = result.get("error", "")
            rows.append(
                [
                    f"{rate}/s",
                    label,
                    stats["p50"],
                    stats["p99"],
                    stats["max"],
                    missing,
                    "yes" if ok else "no",
                    note[:60],
                ]
            )
            key = label.lower().replace(" ", "_")
            lag_summary_line("b11", f"{key}_{rate}", n, stats, missing=missing)
    print()
    table(["rate", "scheduler", "p50 ms", "p99 ms", "max ms", "missing", "held", "note"], rows)
    burst_rows: list[list[Any]] = []
    for label in SCHEDULERS:
        result = one(label, burst, 0.0)
        stats = _stats(result["lags"])
        burst_rows.append(
            [label, burst, stats["p50"], stats["max"] / 1000, _missing(label, burst, result)]
        )
        lag_summary_line("b11", f"{label.lower().replace(' ', '_')}_burst", burst, stats)
    print()
    table(["burst", "jobs", "p50 ms", "last started s", "missing"], burst_rows)
    print()
    table(["scheduler", "highest rate held"], [[k, f"{held.get(k, 0)}/s"] for k in SCHEDULERS])


if __name__ == "__main__":
    main()
