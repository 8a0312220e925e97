"""B6: clients that ask for a large reply and never read it.

A daemon with 10,000 jobs; 300 clients each send ``cron.list`` and never read
the reply: once asking for the default page, once for the largest the daemon
allows (a gatewayd without pages answers every job each time). The figures: the daemon's memory
(RSS) before, at its peak while the clients hang on, and after they leave; and
the event loop's lag meanwhile (``gateway.probe_lag`` on a connection of its
own), with a timer job firing every second.

    .venv/bin/python -m benchmarks.b6_clients [CLIENTS]

It runs against whatever gatewayd is installed, so that an older commit can
be measured the same way (its ``cron.list`` answers every job in one reply).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import AsyncClient, daemon, rss_mib, summary_line, table

JOBS = 10_000
# Every client is served (a gatewayd that knows no limit ignores the variable).
ENV = {"GATEWAYD_MAX_CONNECTIONS": "400"}


async def hang_on(path: Path, params: dict[str, Any]) -> asyncio.StreamWriter:
    """Send ``cron.list`` and never read: the reply waits in the daemon."""
    _reader, writer = await asyncio.open_unix_connection(str(path))
    body = {"jsonrpc": "2.0", "id": 1, "method": "cron.list", "params": params}
    writer.write(orjson.dumps(body) + b"\n")
    await writer.drain()
    return writer


async def measure(path: Path, pid: int, clients: int, params: dict[str, Any]) -> dict[str, float]:
    control = await AsyncClient.connect(path)
    spec = {
        "schedule": {"kind": "every", "every_s": 3600},
        "payload": {"kind": "system_event", "text": "x"},
    }
    for start in range(0, JOBS, 1000):
        batch = [{"name": f"job{n:05}", **spec} for n in range(start, start + 1000)]
        await control.call("cron.add_many", {"jobs": batch})
    await control.call(
        "cron.add",
        {"name": "tick", "schedule": {"kind": "every", "every_s": 1}, "payload": spec["payload"]},
    )
    before = rss_mib(pid)
    probe = asyncio.ensure_future(control.call("gateway.probe_lag", {"seconds": 10.0}))
    started = time.monotonic()
    writers = await asyncio.gather(*(hang_on(path, params) for _ in range(clients)))
    connect_s = time.monotonic() - started
    peak = before
    while not probe.done():
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.1)
    lag = probe.result()
    for writer in writers:
        writer.close()
    await asyncio.sleep(2)
    after = rss_mib(pid)
    await control.close()
    return {
        "rss_before_mib": before,
        "rss_peak_mib": peak,
        "rss_after_mib": after,
        "lag_p50_ms": lag["p50_ms"],
        "lag_p99_ms": lag["p99_ms"],
        "lag_max_ms": lag["max_ms"],
        "connect_s": connect_s,
    }


PAGES: dict[str, dict[str, Any]] = {
    "default page": {"all": True},
    "largest page": {"all": True, "limit": 200},
}


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rows = []
    for label, params in PAGES.items():
        with daemon(env=ENV) as d:
            figures = asyncio.run(measure(d.socket_path, d.pid, clients, params))
        rows.append(
            [
                label,
                clients,
                figures["rss_before_mib"],
                figures["rss_peak_mib"],
                figures["rss_after_mib"],
                figures["lag_p50_ms"],
                figures["lag_p99_ms"],
                figures["lag_max_ms"],
            ]
        )
        summary_line("b6", asked=label.replace(" ", "_"), clients=clients, **figures)
    table(["asked", "clients", "RSS before MiB", "peak", "after", "lag p50 ms", "p99", "max"], rows)


if __name__ == "__main__":
    main()
