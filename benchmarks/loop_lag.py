"""Event-loop lag while the pipeline records runs, with and without a stuck subscriber.

A probe task asks to wake every 1 ms and records how late it wakes, while N
manual ``system_event`` runs go through the whole pipeline on a real SQLite
file (WAL, synchronous=FULL), publishing every lifecycle and run event on the
bus. The measurement is made twice: with no event subscriber, then with one
that never reads (it is dropped once it falls ``queue`` events behind). Store
I/O runs on a worker thread, and the bus never waits for out-of-band readers,
so both rows should show the same lag.

    .venv/bin/python -m benchmarks.loop_lag [N]
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
from gatewayd.api.values import Identity
from gatewayd.assembly import open_core
from gatewayd.clock import SystemClock
from gatewayd.flatspec import spec_from_flat
from gatewayd.logs import configure_logging
from gatewayd.model import PayloadKind
from gatewayd.runners.system_event import SystemEventRunner
from gatewayd.runs import PipelineSettings
from gatewayd.store import SQLiteStore
from gatewayd.workers import open_workers

QUEUE = 100


async def measure(runs: int, state_dir: Path, *, stuck: bool) -> tuple[list[float], float, bool]:
    clock = SystemClock()
    store = SQLiteStore(state_dir / "gatewayd.db")
    await store.open()
    lags: list[float] = []
    settings = PipelineSettings(
        instance_id="bench", state_dir=state_dir, socket_path=state_dir / "s.sock"
    )
    dropped = False
    async with (
        open_workers("inbox", size=1) as inbox,
        open_core(
            store=store,
            clock=clock,
            runners={PayloadKind.SYSTEM_EVENT: SystemEventRunner(offload=inbox.call)},
            settings=settings,
            identity=Identity(
                instance_id="bench",
                pid=0,
                host="bench",
                host_id="bench",
                state_dir=state_dir,
                socket_path=state_dir / "s.sock",
                started_at=clock.now(),
            ),
            event_queue=QUEUE,
        ) as core,
    ):
        bus, pipeline, gateway = core.bus, core.pipeline, core.gateway
        await gateway.jobs.add(
            spec_from_flat({"name": "e", "every": "1h", "system_event": "x", "overlap": "allow"})
        )
        stop = anyio.Event()

        async def probe() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await anyio.sleep(0.001)
                lags.append((time.perf_counter() - before - 0.001) * 1000)

        with bus.subscribe() if stuck else contextlib.nullcontext() as subscription:
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                tg.start_soon(probe)
                requests = [await gateway.runs.request("e", due=False) for _ in range(runs)]
                ids = [r.run.run_id for r in requests if r.run is not None]
                for run_id in ids:
                    await pipeline.wait(run_id)
                stop.set()
            elapsed = time.perf_counter() - started
            dropped = bool(subscription and subscription.dropped)
    await store.close()
    return lags, elapsed, dropped


def main() -> None:
    configure_logging(level="warning")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(f"{'subscriber':<22} {'runs':>6} {'runs/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    summary = [f"runs={runs}"]
    for stuck in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            lags, elapsed, dropped = anyio.run(
                partial(measure, runs, Path(tmp), stuck=stuck),
                backend="asyncio",
                backend_options={"use_uvloop": True},
            )
        lags.sort()
        p50, p99, top = statistics.median(lags), lags[int(len(lags) * 0.99) - 1], lags[-1]
        label = "never reads" + (" (dropped)" if dropped else "") if stuck else "none"
        print(f"{label:<22} {runs:>6} {runs / elapsed:>7.0f} {p50:>7.2f} {p99:>7.2f} {top:>7.2f}")
        key = "stuck" if stuck else "none"
        summary += [
            f"{key}_runs_per_s={runs / elapsed:.0f}",
            f"{key}_lag_p99_ms={p99:.2f}",
            f"{key}_lag_max_ms={top:.2f}",
        ]
    print("SUMMARY " + " ".join(summary))


if __name__ == "__main__":
    main()
