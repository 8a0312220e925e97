"""A slot handled within misfire_grace is an ordinary scheduled run, even after a stall (I7).

The daemon is really stopped (SIGSTOP) for 5 s, inside the default 30 s grace,
and resumed (SIGCONT): the slots that fell due meanwhile are `schedule` runs;
none is `missed`, none is a `catchup`. (The job allows overlap, so that each
slot runs; under `skip` the ones behind a live run are recorded skipped for
overlap, as on time.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from gatewayd.durations import parse_time
from gatewayd.testing import DaemonProcess, wait_until


def runs(d: DaemonProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = d.call("cron.runs", {"job": "tick", "limit": 200})
    return found


def after(found: list[dict[str, Any]], moment: float) -> bool:
    return any(parse_time(r["scheduled_for"]).timestamp() > moment for r in found)


class TestStall:
    def test_slots_late_by_less_than_the_grace_are_ordinary_runs(self, tmp_path: Path) -> None:
        with DaemonProcess(tmp_path / "state") as d:
            added = d.cli(
                "cron",
                "add",
                "--name",
                "tick",
                "--every",
                "1s",
                "--overlap",
                "allow",
                "--command",
                "true",
            )
            assert added.code == 0, added.stderr
            wait_until(lambda: len(runs(d)) >= 2, what="two slots")
            d.signal(signal.SIGSTOP)
            stopped_at = time.time()
            try:
                wait_until(lambda: time.time() - stopped_at >= 5, timeout=10, what="a 5 s stall")
            finally:
                d.signal(signal.SIGCONT)
            resumed_at = time.time()
            wait_until(
                lambda: any(
                    parse_time(r["scheduled_for"]).timestamp() > resumed_at for r in runs(d)
                ),
                what="a slot after the stall",
            )
            stalled = [
                r
                for r in runs(d)
                if stopped_at < parse_time(r["scheduled_for"]).timestamp() <= resumed_at
            ]
        assert len(stalled) >= 4, stalled
        assert {(r["trigger"], r["status"]) for r in stalled} == {("schedule", "succeeded")}
