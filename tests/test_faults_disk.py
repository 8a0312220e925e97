"""A full disk, or a log that cannot be written, never kills the daemon (I11).

Everything is real: a tmpfs mounted by the test and filled, the daemon as a
process, its runs as process groups. Waits are conditions with deadlines.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gatewayd.durations import parse_time
from gatewayd.errors import EXIT_NO_SPACE
from gatewayd.runfiles import read_exit_status
from gatewayd.testing import DaemonProcess, SmallDisk, process_group_members, wait_until

CONFIG = """
[gateway]
sweep_interval = "200ms"
kill_grace = "1s"
"""


def records(path: Path) -> list[str]:
    """Every record of the store at ``path``, read without writing to it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with SmallDisk(tmp_path / "fs", size="16m") as small:
        yield small


def daemon_on(disk: SmallDisk, tmp_path: Path, config: str = CONFIG) -> DaemonProcess:
    return DaemonProcess(disk.path / "state", config=config, files_dir=tmp_path)


def store_status(daemon: DaemonProcess) -> dict[str, Any]:
    store: dict[str, Any] = daemon.call("gateway.status")["store"]
    return store


class TestFullDiskWhileServing:
    def test_endings_are_held_runs_refused_and_all_written_once_space_returns(
        self, disk: SmallDisk, tmp_path: Path
    ) -> None:
        """I11: with the disk full, the daemon serves reads, keeps its live run running,
        refuses new runs and job changes (exit 9, naming the cause, changing nothing),
        and says so in status and STATUS=. Once space returns, by itself, the run's real
        ending is written and every slot that fell due meanwhile is recorded."""
        d = daemon_on(disk, tmp_path)
        with d:
            tick = d.add_job("--name", "tick", "--every", "1s", "--command", "true")
            d.add_job(
                "--name", "work", "--every", "1h", "--shell", "echo start; sleep 1.5; echo end"
            )
            d.add_job("--name", "runaway", "--every", "1h", "--shell", "sleep 60")
            runaway = d.call("cron.run", {"job": "runaway"})["run_id"]
            run_id = d.call("cron.run", {"job": "work"})["run_id"]
            pgid = wait_until(lambda: d.run_record(run_id)["pid"], what="work to run")
            log = d.state_dir / "runs" / d.run_record(run_id)["job_id"] / f"{run_id}.log"
            wait_until(lambda: log.read_text() == "start\n", what="its first line")
            disk.fill()
            wait_until(lambda: not store_status(d)["writable"], what="the fault to be seen")
            wait_until(lambda: not process_group_members(pgid), timeout=10, what="work to end")
            wait_until(lambda: store_status(d)["held_writes"] >= 1, what="the ending held")

            store = store_status(d)
            assert store["fault"]["kind"] == "no_space"
            assert "no space" in store["fault"]["message"]
            before = d.call("cron.list", {"all": True})
            refused = d.cli("cron", "run", "work")
            assert refused.code == EXIT_NO_SPACE, refused.stdout + refused.stderr
            assert "no space" in refused.stderr
            added = d.cli("cron", "add", "--name", "new", "--every", "1h", "--command", "true")
            assert added.code == EXIT_NO_SPACE, added.stderr
            assert d.call("cron.list", {"all": True}) == before
            assert d.run_record(run_id)["status"] == "running"  # the record waits for the disk
            # A runaway job can still be stopped; its ending waits for the disk too.
            runaway_group = d.run_record(runaway)["pid"]
            stopped = d.cli("cron", "cancel", runaway)
            assert stopped.code == 0, stopped.stderr
            wait_until(lambda: not process_group_members(runaway_group), what="it to stop")
            d.wait_for_notify(
                lambda lines: any(ln.startswith("STATUS=store takes no writes") for ln in lines),
                timeout=5,
                what="STATUS= naming the fault",
            )
            assert d.process is not None and d.process.poll() is None

            disk.free()
            wait_until(lambda: store_status(d)["writable"], timeout=10, what="writes again")
            ended = wait_until(
                lambda: (r := d.run_record(run_id))["status"] != "running" and r,
                what="the held ending to be written",
            )
            # Its ending may reach the store after the disk came back: wait for it too.
            cancelled = wait_until(
                lambda: (r := d.run_record(runaway))["status"] != "running" and r,
                what="the runaway's ending to be written",
            )
            assert cancelled["status"] == "cancelled"
            # What it printed before the disk filled is kept (what came after may not be).
            assert (ended["status"], ended["exit_code"]) == ("succeeded", 0)
            assert ended["output_tail"].startswith("start\n")
            # Every slot of the tick job is recorded, the ones of the outage included.
            slots = sorted(
                parse_time(r["scheduled_for"])
                for r in d.call("cron.runs", {"job": tick["id"], "limit": 200})
            )
            expected = [slots[0] + timedelta(seconds=n) for n in range(len(slots))]
            assert slots == expected, "no slot was dropped during the outage"
            assert d.process.poll() is None
            again = d.cli("cron", "run", "work", "--wait", "--json")
            assert again.code == 0, again.stderr

    def test_a_job_that_fills_the_disk_with_output_never_kills_the_daemon(
        self, disk: SmallDisk, tmp_path: Path
    ) -> None:
        """I11: 20 MB of output onto a 16 MB disk (under the default 16 MiB cap) fills it;
        the command is not killed, the daemon lives, and once the log is removed the run
        is recorded with its real status."""
        d = daemon_on(disk, tmp_path)
        with d:
            d.add_job("--name", "loud", "--every", "1h", "--shell", "head -c 20000000 /dev/zero")
            run_id = d.call("cron.run", {"job": "loud"})["run_id"]
            wait_until(lambda: not store_status(d)["writable"], timeout=20, what="a full disk")
            assert d.process is not None and d.process.poll() is None
            run = d.run_record(run_id)
            log = d.state_dir / "runs" / run["job_id"] / f"{run_id}.log"
            wait_until(lambda: not process_group_members(run["pid"]), timeout=20, what="the end")
            log.unlink()
            ended = wait_until(
                lambda: (r := d.run_record(run_id))["status"] != "running" and r,
                timeout=10,
                what="the ending written",
            )
            assert (ended["status"], ended["exit_code"]) == ("succeeded", 0)
            assert d.process.poll() is None


class TestExitStatusOnAFullDisk:
    def test_a_run_that_ends_on_a_full_disk_keeps_its_real_status(
        self, disk: SmallDisk, tmp_path: Path
    ) -> None:
        """I4/I11: the daemon is killed, the disk filled, the command exits 7: its waiter
        still writes the status (its room was reserved). A start on the full disk says
        so (exit 9) and never calls the store damaged, nor changes it; once there is
        space, the run is recorded failed with exit code 7, not interrupted."""
        d = daemon_on(disk, tmp_path)
        try:
            d.start()
            d.add_job("--name", "seven", "--every", "1d", "--shell", "sleep 1; exit 7")
            run_id = d.call("cron.run", {"job": "seven"})["run_id"]
            run = wait_until(lambda: (r := d.run_record(run_id))["pid"] and r, what="running")
            d.kill()
            disk.fill()
            wait_until(lambda: not process_group_members(run["pid"]), timeout=10, what="exit 7")
            exit_file = d.state_dir / "runs" / run["job_id"] / f"{run_id}.exit"
            written = read_exit_status(exit_file)
            assert written is not None and written.status == 7

            store = d.state_dir / "gatewayd.db"
            before = records(store)
            assert d.exit_code() == EXIT_NO_SPACE
            log = d.log()
            assert "no space" in log and "not damaged" in log
            assert "is damaged" not in log and "move it aside" not in log
            assert records(store) == before

            disk.free()
            d.start()
            ended = wait_until(
                lambda: (r := d.run_record(run_id))["status"] != "running" and r,
                what="the run to be settled",
            )
            assert (ended["status"], ended["exit_code"], ended["error_kind"]) == (
                "failed",
                7,
                "exit",
            )
        finally:
            d.close()


class TestOutputLimit:
    def test_output_past_max_output_is_dropped_with_a_marker(self, tmp_path: Path) -> None:
        """A run's log keeps at most max_output bytes; a last line says how much more
        went; the command is not killed and its status is its own."""
        with DaemonProcess(tmp_path / "state") as d:
            d.add_job(
                "--name",
                "chatty",
                "--every",
                "1h",
                "--max-output",
                "64KiB",
                "--shell",
                "head -c 3000000 /dev/zero | tr '\\0' x; echo; exit 3",
            )
            done = d.cli("cron", "run", "chatty", "--wait", "--json")
            run = done.json()
            assert (run["status"], run["exit_code"]) == ("failed", 3)
            log = d.state_dir / "runs" / run["job_id"] / f"{run['run_id']}.log"
            text = log.read_bytes()
            assert text.startswith(b"x" * 65536)
            marker = text[65536:].decode()
            assert "max_output of 65536 bytes reached" in marker
            dropped = int(re.search(r"(\d+) more bytes", marker).group(1))  # type: ignore[union-attr]
            assert dropped == 3000001 - 65536
            assert "more bytes of output were dropped" in run["output_tail"]


class TestLogsThatCannotBeWritten:
    @pytest.mark.parametrize("where", ["closed pipe", "full disk"])
    def test_the_daemon_lives_on_and_counts_what_it_lost(
        self, where: str, disk: SmallDisk, tmp_path: Path
    ) -> None:
        """I11: with stderr a pipe whose reader has gone, or a file on a full disk,
        logging never raises: runs go on and status counts the lost lines."""
        if where == "closed pipe":
            read_end, stderr = os.pipe()
            os.close(read_end)
        else:
            stderr = os.open(disk.path / "stderr.log", os.O_WRONLY | os.O_CREAT, 0o600)
            disk.fill()
        d = DaemonProcess(tmp_path / "state", config=CONFIG, stderr=stderr)
        try:
            d.start()
            os.close(stderr)
            d.add_job("--name", "ok", "--every", "1h", "--command", "true")
            done = d.cli("cron", "run", "ok", "--wait", "--json")
            assert done.code == 0, done.stderr
            status = d.call("gateway.status")
            assert status["log_lines_dropped"] > 0
            assert d.process is not None and d.process.poll() is None
        finally:
            d.close()
