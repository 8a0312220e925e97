"""Shared pieces of the benchmarks: a real daemon, a pipelining RPC client, statistics."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from gatewayd.testing import DaemonProcess


def machine() -> str:
    """Cores, memory and Python, as RESULTS.md records them."""
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return (
        f"{os.cpu_count()} cores, {total_kb / 1024 / 1024:.1f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered) if ordered else float("nan"),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def summary_line(name: str, **values: Any) -> None:
    parts = " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    print(f"SUMMARY {name} {parts}", flush=True)


def lag_summary_line(name: str, case: str, jobs: int, lags: dict[str, float], **extra: Any) -> None:
    """A ``SUMMARY`` line of a firing-lag case: its p50, p99 and max in milliseconds."""
    summary_line(
        name,
        case=case,
        jobs=jobs,
        p50_ms=lags["p50"],
        p99_ms=lags["p99"],
        max_ms=lags["max"],
        **extra,
    )


@contextmanager
def daemon(config: str = "", *, env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    """A real `gatewayd serve` on a temporary state directory, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="gwbench") as tmp:
        process = DaemonProcess(
            Path(tmp) / "state", config=config, env=env or {}, ready_timeout=120
        )
        try:
            yield process.start()
        finally:
            process.close()


class AsyncClient:
    """One request at a time on one connection: open several for requests in parallel."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path) -> AsyncClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 26)
        return cls(reader, writer)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        async with self._lock:
            request_id = next(self._ids)
            body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            self._writer.write(orjson.dumps(body) + b"\n")
            await self._writer.drain()
            reply = orjson.loads(await self._reader.readline())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']['message']}")
        return reply["result"]

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wakeups(pid: int) -> int:
    """Context switches of every thread of the process (each one a wake-up from sleep)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "status") as handle:
            for line in handle:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def python() -> str:
    return sys.executable
