"""B9: the dashboard under 50 clients, and what it costs the timer.

A daemon with 100 jobs (one firing every second) serves its dashboard on
loopback. First 10 s with no client, then 10 s while 50 clients each load the
jobs page and a job's page, one after the other, as fast as they are
answered. The figures: pages per second and their latency; the event loop's lag
meanwhile (``gateway.probe_lag`` on a socket connection of its own); and the
firing lag of the every-second job's runs (start minus slot), read from the
store.

    .venv/bin/python -m benchmarks.b9_dashboard [CLIENTS] [SECONDS]
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import httpx
from gatewayd.durations import parse_time
from gatewayd.testing import wait_until

from benchmarks.common import AsyncClient, daemon, percentile, summary_line, table

JOBS = 100
CONFIG = '[http]\nlisten = "127.0.0.1:0"\n'


def url_of(log: str) -> str:
    found = re.search(r'"http":\s*"(http://[^"]+)"', log) or re.search(r"http=(http://\S+)", log)
    assert found is not None, "the ready line names no URL"
    return found.group(1)


async def load(base: str, clients: int, seconds: float) -> list[float]:
    """Each client loads the jobs page and a job's page in turn until ``seconds`` pass."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        pages = (base, base + "jobs/tick")
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = await http.get(pages[n % 2])
            answer.raise_for_status()
            latencies.append((time.monotonic() - started) * 1000)
            n += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies


async def measure(path: Path, base: str, clients: int, seconds: float) -> list[list[object]]:
    control = await AsyncClient.connect(path)
    spec = {"payload": {"kind": "system_event", "text": "x"}}
    batch = [
        {"name": f"job{n:03}", "schedule": {"kind": "every", "every_s": 3600}, **spec}
        for n in range(JOBS - 1)
    ]
    await control.call("cron.add_many", {"jobs": batch})
    await control.call(
        "cron.add", {"name": "tick", "schedule": {"kind": "every", "every_s": 1}, **spec}
    )
    rows: list[list[object]] = []
    for case, crowd in (("no client", 0), (f"{clients} clients", clients)):
        started = time.time()
        probe = asyncio.ensure_future(control.call("gateway.probe_lag", {"seconds": seconds}))
        latencies = await load(base, crowd, seconds) if crowd else []
        lag = await probe
        runs = await control.call("cron.runs", {"job": "tick", "limit": 200})
        firing = sorted(
            (parse_time(r["started_at"]) - parse_time(r["scheduled_for"])).total_seconds() * 1000
            for r in runs
            if r["started_at"] and parse_time(r["scheduled_for"]).timestamp() >= started
        )
        latencies.sort()
        figures = {
            "pages_per_s": len(latencies) / seconds,
            "page_p50_ms": percentile(latencies, 0.5) if latencies else 0.0,
            "page_p99_ms": percentile(latencies, 0.99) if latencies else 0.0,
            "lag_p50_ms": lag["p50_ms"],
            "lag_p99_ms": lag["p99_ms"],
            "lag_max_ms": lag["max_ms"],
            "firing_p50_ms": percentile(firing, 0.5) if firing else 0.0,
            "firing_max_ms": firing[-1] if firing else 0.0,
        }
        summary_line("b9", case=case.replace(" ", "_"), **figures)
        rows.append([case, *(round(v, 1) for v in figures.values())])
    await control.close()
    return rows


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    with daemon(CONFIG) as d:
        wait_until(lambda: "gatewayd ready" in d.log(), what="the ready line")
        rows = asyncio.run(measure(d.socket_path, url_of(d.log()), clients, seconds))
    table(
        [
            "case",
            "pages/s",
            "page p50 ms",
            "p99",
            "loop lag p50 ms",
            "p99",
            "max",
            "firing p50 ms",
            "max",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
