"""B10: importing a large OpenClaw store, and what it costs the timer.

An OpenClaw ``jobs.json`` of JOBS jobs, each with a ``runs/<id>.jsonl`` of
LINES finished runs (OpenClaw keeps at most 2,000 lines a job), is imported
into a daemon by ``import.openclaw``: first as a dry run, then for real. The
figures: the wall time of each, and the event loop's lag meanwhile
(``gateway.probe_lag`` on a connection of its own, for the whole import).

    .venv/bin/python -m benchmarks.b10_import [JOBS] [LINES]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson
from gatewayd.testing import wait_until

from benchmarks.common import AsyncClient, daemon, summary_line, table

DAY_MS = 86_400_000


def build(root: Path, jobs: int, lines: int) -> Path:
    now = int(time.time() * 1000)
    (root / "runs").mkdir(parents=True)
    found = []
    for n in range(jobs):
        job_id = f"oc-{n:04}"
        found.append(
            {
                "id": job_id,
                "name": f"job {n:04}",
                "enabled": True,
                "schedule": {"kind": "cron", "expr": f"{n % 60} * * * *", "tz": "UTC"},
                "sessionTarget": "main",
                "payload": {"kind": "systemEvent", "text": f"tick {n}"},
                "state": {},
            }
        )
        start = now - 20 * DAY_MS
        entries = (
            orjson.dumps(
                {
                    "ts": start + i * 60_000 + 900,
                    "jobId": job_id,
                    "action": "finished",
                    "status": "ok" if i % 7 else "error",
                    "summary": "a summary of a few words",
                    "runAtMs": start + i * 60_000,
                    "durationMs": 900,
                }
            )
            for i in range(lines)
        )
        (root / "runs" / f"{job_id}.jsonl").write_bytes(b"\n".join(entries) + b"\n")
    (root / "jobs.json").write_bytes(orjson.dumps({"version": 1, "jobs": found}))
    return root


async def measure(path: Path, cron_dir: Path) -> list[list[object]]:
    control = await AsyncClient.connect(path)
    importer = await AsyncClient.connect(path)
    rows: list[list[object]] = []
    for case, dry in (("dry run", True), ("import", False)):
        params = {"dir": str(cron_dir), "dry_run": dry, "host_zone": "UTC"}
        started = time.perf_counter()
        job = asyncio.ensure_future(importer.call("import.openclaw", params))
        probe = asyncio.ensure_future(control.call("gateway.probe_lag", {"seconds": 0.5}))
        lags: list[float] = []
        while not job.done():
            lag = await probe
            lags.append(lag["max_ms"])
            lags.append(lag["p99_ms"])
            probe = asyncio.ensure_future(control.call("gateway.probe_lag", {"seconds": 0.5}))
        report = job.result()
        seconds = time.perf_counter() - started
        await probe
        figures = {
            "seconds": seconds,
            "jobs": report["summary"]["imported"],
            "runs": report["summary"]["runs"],
            "lag_max_ms": max(lags) if lags else 0.0,
        }
        summary_line("b10", case=case.replace(" ", "_"), **figures)
        rows.append(
            [
                case,
                round(seconds, 2),
                figures["jobs"],
                figures["runs"],
                round(figures["lag_max_ms"], 1),
            ]
        )
    await control.close()
    await importer.close()
    return rows


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory(prefix="gwimport") as tmp, daemon() as d:
        cron_dir = build(Path(tmp) / "cron", jobs, lines)
        wait_until(lambda: "gatewayd ready" in d.log(), what="the ready line")
        rows = asyncio.run(measure(d.socket_path, cron_dir))
    table(["case", "seconds", "jobs", "runs", "loop lag max ms"], rows)


if __name__ == "__main__":
    main()
