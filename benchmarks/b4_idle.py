"""B4: idle cost: wake-ups per second and CPU with 10,000 jobs, none due within a minute.

The daemon's wake-ups are the context switches of all its threads (each is a
return from sleep), read from /proc over the measuring window; CPU is its user
plus system time over the same window.

    .venv/bin/python -m benchmarks.b4_idle [JOBS] [SECONDS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gatewayd.durations import format_time

from benchmarks.common import AsyncClient, cpu_seconds, daemon, summary_line, table, wakeups

CONFIG = """
[gateway]
log_level = "warning"
"""


async def add(path: Path, jobs: int) -> None:
    client = await AsyncClient.connect(path)
    base = datetime.now(UTC) + timedelta(minutes=10)
    for start in range(0, jobs, 5_000):
        batch = [
            {
                "name": f"idle{i:06d}",
                "schedule": {"kind": "at", "at": format_time(base + timedelta(seconds=i))},
                "payload": {"kind": "system_event", "text": "x"},
            }
            for i in range(start, min(jobs, start + 5_000))
        ]
        await client.call("cron.add_many", {"jobs": batch})
    await client.close()


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    with daemon(CONFIG) as d:
        asyncio.run(add(d.socket_path, jobs))
        time.sleep(12)  # let the add's worker threads time out and the loop settle
        wake_0, cpu_0, t_0 = wakeups(d.pid), cpu_seconds(d.pid), time.monotonic()
        time.sleep(seconds)
        wake_1, cpu_1, t_1 = wakeups(d.pid), cpu_seconds(d.pid), time.monotonic()
    elapsed = t_1 - t_0
    per_s = (wake_1 - wake_0) / elapsed
    cpu = (cpu_1 - cpu_0) / elapsed * 100
    print()
    table(["jobs", "seconds", "wake-ups/s", "cpu %"], [[jobs, round(elapsed), per_s, cpu]])
    summary_line("b4", jobs=jobs, seconds=elapsed, wakeups_per_s=per_s, cpu_percent=cpu)


if __name__ == "__main__":
    main()
