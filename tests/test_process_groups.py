"""A run's processes never outlive its record (I9).

Real process groups under a real daemon: a waiter killed with SIGKILL while its
command goes on, a command that leaves `sleep 100 &` behind (stopped by default,
kept by policy), and a waiter lost while no daemon ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from gatewayd.testing import DaemonProcess, process_group_members, wait_until

CONFIG = """
[gateway]
kill_grace = "1s"
sweep_interval = "200ms"
"""


def ended(d: DaemonProcess, run_id: str) -> dict[str, Any]:
    """The run once it has ended, checked at that moment against its group."""

    def look() -> dict[str, Any] | None:
        run = d.run_record(run_id)
        return None if run["status"] in ("queued", "running") else run

    return wait_until(look, timeout=15, what=f"run {run_id} to end")


class TestWaiterKilled:
    def test_the_group_is_stopped_before_the_run_is_recorded(self, tmp_path: Path) -> None:
        """kill -9 of a run's waiter: its command is stopped (SIGTERM, grace, SIGKILL)
        before the run is recorded interrupted, with the reason; meanwhile the job stays
        running, so no second run of the `skip` job starts beside it."""
        with DaemonProcess(tmp_path / "state", config=CONFIG) as d:
            d.add_job(
                "--name", "victim", "--every", "1h", "--timeout", "20s", "--shell", "sleep 30"
            )
            run_id = d.call("cron.run", {"job": "victim"})["run_id"]
            waiter = wait_until(lambda: d.run_record(run_id)["pid"], what="the run to start")
            wait_until(lambda: len(process_group_members(waiter)) >= 2, what="the command to start")
            os.kill(waiter, signal.SIGKILL)
            second = d.call("cron.run", {"job": "victim"})
            run = ended(d, run_id)
            assert process_group_members(waiter) == [], "nothing of its group is left"
            assert (run["status"], run["error_kind"], run["stop_reason"]) == (
                "interrupted",
                "interrupted",
                "lost",
            )
            assert "waiter" in run["error"] and "SIGKILL" in run["error"]
            assert "stopped" in run["error"]
            if second["ran"]:
                # Admitted only once the first was recorded ended, its group empty.
                assert d.run_record(second["run_id"])["queued_at"] >= run["ended_at"]
            else:
                assert second["run_id"] == run_id

    def test_a_waiter_lost_while_no_daemon_ran_is_settled_with_its_group(
        self, tmp_path: Path
    ) -> None:
        """The daemon and the waiter are killed; the command goes on. The next start
        stops the group, then records the run interrupted."""
        d = DaemonProcess(tmp_path / "state", config=CONFIG)
        try:
            d.start()
            d.add_job("--name", "orphan", "--every", "1h", "--shell", "sleep 30")
            run_id = d.call("cron.run", {"job": "orphan"})["run_id"]
            waiter = wait_until(lambda: d.run_record(run_id)["pid"], what="the run to start")
            wait_until(lambda: len(process_group_members(waiter)) >= 2, what="its command")
            d.kill()
            os.kill(waiter, signal.SIGKILL)
            assert process_group_members(waiter), "the command outlives both"
            d.start()
            run = ended(d, run_id)
            assert process_group_members(waiter) == []
            assert (run["status"], run["stop_reason"]) == ("interrupted", "lost")
            assert "stopped" in run["error"]
        finally:
            d.close()


# Leaves `sleep 100` behind, once the child the shell forked has become it.
LEAVES_SLEEP = (
    'sleep 100 & until [ "$(cat /proc/$!/comm 2>/dev/null)" = sleep ]; do :; done; echo started'
)


class TestLeftovers:
    def test_processes_left_behind_are_stopped_and_named(self, tmp_path: Path) -> None:
        """`sleep 100 &` outlives its command: by default it is stopped before the run is
        recorded, and the run names it."""
        with DaemonProcess(tmp_path / "state", config=CONFIG) as d:
            # The command waits until its child is `sleep` (not yet the forked shell).
            d.add_job("--name", "messy", "--every", "1h", "--shell", LEAVES_SLEEP)
            done = d.cli("cron", "run", "messy", "--wait", "--json")
            run = done.json()
            assert (run["status"], run["output_tail"]) == ("succeeded", "started\n")
            assert process_group_members(run["pid"]) == []
            leftovers = run["leftovers"]
            assert leftovers["policy"] == "kill"
            assert [p["command"] for p in leftovers["processes"]] == ["sleep 100"]

    def test_kept_by_policy_they_go_on_and_are_named(self, tmp_path: Path) -> None:
        """With `--leftovers keep` they are kept, and the run records that they were."""
        with DaemonProcess(tmp_path / "state", config=CONFIG) as d:
            d.add_job(
                "--name",
                "keeper",
                "--every",
                "1h",
                "--leftovers",
                "keep",
                "--shell",
                "sleep 100 & echo started",
            )
            run = d.cli("cron", "run", "keeper", "--wait", "--json").json()
            try:
                assert run["status"] == "succeeded"
                assert run["leftovers"]["policy"] == "keep"
                kept = [p["pid"] for p in run["leftovers"]["processes"]]
                assert kept and all(p in process_group_members(run["pid"]) for p in kept)
                job = d.call("cron.get", {"job": "keeper"})
                assert job["leftovers"] == "keep" and job["running_run_id"] is None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run["pid"], signal.SIGKILL)
