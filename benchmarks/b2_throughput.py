"""B2: durable throughput, end to end: from the RPC call to the recorded terminal status.

C clients each call ``cron.run`` then ``runs.wait``, over and over, against a real
daemon, for a ``system_event`` job and for an exec of ``true``. Every run is
recorded as queued, running and ended (with its events and session) before
``runs.wait`` returns. Also printed: the daemon's CPU seconds per run, and the
store's commits (each one fsync of the WAL, with ``synchronous=FULL``) per run.

    .venv/bin/python -m benchmarks.b2_throughput [RUNS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from benchmarks.common import AsyncClient, cpu_seconds, daemon, summary_line, table

CONFIG = """
[gateway]
max_concurrent_runs = 256
log_level = "warning"
"""
CLIENTS = 32


async def drive(path: Any, job: str, runs: int) -> tuple[float, dict[str, Any], dict[str, Any]]:
    clients = [await AsyncClient.connect(path) for _ in range(CLIENTS)]
    admin = await AsyncClient.connect(path)
    before = await admin.call("gateway.status")
    remaining = [runs]

    async def worker(client: AsyncClient) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            result = await client.call("cron.run", {"job": job})
            run = await client.call("runs.wait", {"run_id": result["run_id"]})
            if run["status"] != "succeeded":
                raise RuntimeError(f"run {run['run_id']} ended {run['status']}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    after = await admin.call("gateway.status")
    for client in [*clients, admin]:
        await client.close()
    return elapsed, before, after


async def measure(runs: int) -> list[list[Any]]:
    rows = []
    for label, payload in (
        ("system_event", {"kind": "system_event", "text": "tick"}),
        ("exec true", {"kind": "exec", "command": "true"}),
    ):
        with daemon(CONFIG) as d:
            client = await AsyncClient.connect(d.socket_path)
            spec = {
                "name": "bench",
                "schedule": {"kind": "every", "every_s": 86400},
                "payload": payload,
                "overlap": "allow",
            }
            await client.call("cron.add", spec)
            await client.close()
            cpu_before = cpu_seconds(d.pid)
            elapsed, before, after = await drive(d.socket_path, "bench", runs)
            cpu = cpu_seconds(d.pid) - cpu_before
        commits = after["store"]["commits"] - before["store"]["commits"]
        rate = runs / elapsed
        rows.append([label, runs, rate, cpu / runs * 1000, commits / runs])
        summary_line(
            "b2",
            case=label.replace(" ", "_"),
            runs=runs,
            runs_per_s=rate,
            cpu_ms_per_run=cpu / runs * 1000,
            fsyncs_per_run=commits / runs,
        )
    return rows


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rows = asyncio.run(measure(runs))
    print()
    table(["payload", "runs", "runs/s", "daemon cpu ms/run", "commits/run"], rows)


if __name__ == "__main__":
    main()
