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
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from benchmarks.b1_firing_lag import apscheduler_run, gatewayd_run
from benchmarks.common import lag_summary_line, summarise, table

HELD_P99_MS = 50.0
# How long after its last slot a scheduler that fell behind is waited for: what has
# not started by then counts as missing.
GRACE_S = 30.0
Case = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


def cases(n: int, window_s: float) -> list[tuple[str, Case]]:
    return [
        ("gatewayd", partial(gatewayd_run, n, window_s, exec_jobs=True, grace_s=GRACE_S)),
        (
            "APScheduler memory",
            partial(apscheduler_run, n, window_s, store="memory", exec_jobs=True, grace_s=GRACE_S),
        ),
        (
            "APScheduler SQLite",
            partial(apscheduler_run, n, window_s, store="sqlite", exec_jobs=True, grace_s=GRACE_S),
        ),
    ]


def main() -> None:
    # A scheduler that falls behind logs every job it skips or cannot store: quiet.
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    rates = [
        int(r) for r in (sys.argv[1] if len(sys.argv) > 1 else "100,200,300,400,500").split(",")
    ]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    burst = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rows: list[list[Any]] = []
    held: dict[str, int] = {}
    for rate in rates:
        n = int(rate * seconds)
        for label, case in cases(n, seconds):
            result = asyncio.run(case())
            stats = summarise(result["lags"])
            missing = n - len(result["lags"]) + (result["failed"] if label == "gatewayd" else 0)
            ok = missing == 0 and stats["p99"] <= HELD_P99_MS
            if ok:
                held[label] = max(held.get(label, 0), rate)
            rows.append(
                [
                    f"{rate}/s",
                    label,
                    stats["p50"],
                    stats["p99"],
                    stats["max"],
                    missing,
                    "yes" if ok else "no",
                ]
            )
            key = label.lower().replace(" ", "_")
            lag_summary_line("b11", f"{key}_{rate}", n, stats, missing=missing)
    print()
    table(["rate", "scheduler", "p50 ms", "p99 ms", "max ms", "missing", "held"], rows)
    burst_rows: list[list[Any]] = []
    for label, case in cases(burst, 0.0):
        result = asyncio.run(case())
        stats = summarise(result["lags"])
        burst_rows.append(
            [label, burst, stats["p50"], stats["max"] / 1000, burst - len(result["lags"])]
        )
        lag_summary_line("b11", f"{label.lower().replace(' ', '_')}_burst", burst, stats)
    print()
    table(["burst", "jobs", "p50 ms", "last started s", "missing"], burst_rows)
    print()
    table(["scheduler", "highest rate held"], [[k, f"{v}/s"] for k, v in held.items()])


if __name__ == "__main__":
    main()
