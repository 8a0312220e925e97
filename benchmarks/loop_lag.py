"""Event-loop lag while the pipeline records runs in the SQLite store.

A probe task asks to wake every 1 ms and records how late it wakes, while N
manual `system_event` runs go through the whole pipeline on a real SQLite file
(WAL, synchronous=FULL). Store I/O runs on a worker thread, so the lag should
stay near the loop's own scheduling noise, whatever the disk does.

    .venv/bin/python -m benchmarks.loop_lag [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from gatewayd.api import Gateway, Identity
from gatewayd.bus import Bus
from gatewayd.clock import SystemClock
from gatewayd.flatspec import spec_from_flat
from gatewayd.logs import configure_logging
from gatewayd.model import PayloadKind
from gatewayd.runners.system_event import SystemEventRunner
from gatewayd.runs import PipelineSettings, open_pipeline
from gatewayd.scheduler import Scheduler
from gatewayd.sessions import SessionPersister
from gatewayd.store import SQLiteStore


async def measure(runs: int, state_dir: Path) -> tuple[list[float], float]:
    clock = SystemClock()
    store = SQLiteStore(state_dir / "gatewayd.db")
    await store.open()
    lags: list[float] = []
    settings = PipelineSettings(
        instance_id="bench", state_dir=state_dir, socket_path=state_dir / "s.sock"
    )
    bus = Bus(store)
    bus.add_in_band(SessionPersister(store))
    async with open_pipeline(
        bus=bus,
        store=store,
        clock=clock,
        runners={PayloadKind.SYSTEM_EVENT: SystemEventRunner()},
        settings=settings,
    ) as pipeline:
        scheduler = Scheduler(store=store, clock=clock, pipeline=pipeline)
        gateway = Gateway(
            bus=bus,
            store=store,
            clock=clock,
            pipeline=pipeline,
            scheduler=scheduler,
            identity=Identity(
                instance_id="bench",
                pid=0,
                host="bench",
                state_dir=state_dir,
                socket_path=state_dir / "s.sock",
                started_at=clock.now(),
            ),
        )
        await gateway.add_job(
            spec_from_flat({"name": "e", "every": "1h", "system_event": "x", "overlap": "allow"})
        )
        stop = anyio.Event()

        async def probe() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await anyio.sleep(0.001)
                lags.append((time.perf_counter() - before - 0.001) * 1000)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            ids = [(await gateway.run_job("e", due=False))["run_id"] for _ in range(runs)]
            for run_id in ids:
                await pipeline.wait(run_id)
            stop.set()
        elapsed = time.perf_counter() - started
    await store.close()
    return lags, elapsed


def main() -> None:
    configure_logging(level="warning")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        lags, elapsed = anyio.run(
            measure, runs, Path(tmp), backend="asyncio", backend_options={"use_uvloop": True}
        )
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1]
    print(f"{'runs':>8} {'seconds':>8} {'runs/s':>8} {'lag p50':>8} {'lag p99':>8} {'lag max':>8}")
    print(
        f"{runs:>8} {elapsed:>8.2f} {runs / elapsed:>8.0f} {statistics.median(lags):>7.2f}m"
        f" {p99:>7.2f}m {lags[-1]:>7.2f}m"
    )
    print(
        f"SUMMARY runs={runs} runs_per_s={runs / elapsed:.0f} "
        f"lag_p50_ms={statistics.median(lags):.2f} lag_p99_ms={p99:.2f} lag_max_ms={lags[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
