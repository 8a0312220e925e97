"""APScheduler 4 on PostgreSQL, for B8: run by ``benchmarks/b8_cluster.py`` in its own venv.

APScheduler 4 cannot share a venv with the APScheduler 3.11 of the other
benchmarks, so ``make bench-cluster`` installs it in ``.venv-ap4``, and this
script imports nothing of gatewayd. Two commands:

    add URL SCHEMA OUT N FIRST_TS WINDOW_S MODE   # N date schedules, then exit
    run URL SCHEMA OUT NAME UNTIL_TS MODE         # one scheduler until UNTIL_TS

``MODE`` is ``inprocess`` (the task notes its own start) or ``exec`` (the task
runs the benchmarks' command, which notes its start). Each scheduler appends
``start_ts schedule_index slot_ts scheduler`` lines to ``OUT/NAME.log``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COMMAND = 'echo "$(date +%s.%N) $AP_INDEX $AP_SLOT $AP_NAME" >> "$AP_LOG"'
ADDERS = 16

_state: dict[str, Any] = {}


async def tick(index: int, slot_ts: float) -> None:
    """The task every schedule runs."""
    started = time.time()
    if _state["mode"] == "inprocess":
        _state["log"].write(f"{started:.6f} {index} {slot_ts:.6f} {_state['name']}\n")
        return
    env = {
        **os.environ,
        "AP_INDEX": str(index),
        "AP_SLOT": f"{slot_ts:.6f}",
        "AP_NAME": _state["name"],
        "AP_LOG": str(_state["path"]),
    }
    process = await asyncio.create_subprocess_exec("/bin/sh", "-c", COMMAND, env=env)
    await process.wait()


def _parts(url: str, schema: str) -> tuple[Any, Any, Any]:
    ap = importlib.import_module("apscheduler")
    sqlalchemy_store = importlib.import_module("apscheduler.datastores.sqlalchemy")
    psycopg_broker = importlib.import_module("apscheduler.eventbrokers.psycopg")
    asyncio_ext = importlib.import_module("sqlalchemy.ext.asyncio")
    engine = asyncio_ext.create_async_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    store = sqlalchemy_store.SQLAlchemyDataStore(engine, schema=schema)
    broker = psycopg_broker.PsycopgEventBroker.from_async_sqla_engine(engine)
    return ap, store, broker


async def add(url: str, schema: str, n: int, first_ts: float, window_s: float) -> None:
    ap, store, broker = _parts(url, schema)
    date_trigger = importlib.import_module("apscheduler.triggers.date").DateTrigger
    first = datetime.fromtimestamp(first_ts, UTC)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    async with ap.AsyncScheduler(store, broker, role=ap.SchedulerRole.scheduler) as scheduler:

        async def adder() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                slot = first + timedelta(milliseconds=round(i * window_s * 1000 / n))
                await scheduler.add_schedule(
                    tick,
                    date_trigger(slot),
                    id=f"s{i}",
                    args=[i, slot.timestamp()],
                    misfire_grace_time=None,
                )

        await asyncio.gather(*(adder() for _ in range(ADDERS)))


async def run(url: str, schema: str, name: str, until_ts: float) -> None:
    ap, store, broker = _parts(url, schema)
    async with ap.AsyncScheduler(store, broker, identity=name, max_concurrent_jobs=512) as s:
        await s.start_in_background()
        await asyncio.sleep(max(0.0, until_ts - time.time()))  # runs until the benchmark's end
        await s.stop()


def main() -> None:
    command, url, schema, out = sys.argv[1:5]
    if command == "add":
        n, first_ts, window_s = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
        asyncio.run(add(url, schema, n, first_ts, window_s))
        return
    name, until_ts, mode = sys.argv[5], float(sys.argv[6]), sys.argv[7]
    path = Path(out) / f"{name}.log"
    _state.update(mode=mode, name=name, path=path)
    with path.open("a", buffering=1) as log:
        _state["log"] = log
        asyncio.run(run(url, schema, name, until_ts))


if __name__ == "__main__":
    main()
