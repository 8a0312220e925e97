"""Start-up says what is wrong with the store, and never advises throwing a good one away.

Each case is made real: a file damaged with random bytes, a real read-only
tmpfs, a real permission refused (root without its DAC capabilities), a schema
from the future, and a WAL deleted or replaced under a running daemon. A
refused start changes nothing; for a damaged store that means its bytes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from gatewayd.errors import (
    EXIT_CONFLICT,
    EXIT_IO_ERROR,
    EXIT_PERMISSION,
    EXIT_READ_ONLY,
    EXIT_STORE_DAMAGED,
    EXIT_STORE_TOO_NEW,
)
from gatewayd.model import ExecPayload, Job, Run, RunStatus, Schedule, ScheduleKind, Trigger
from gatewayd.store import SQLiteStore
from gatewayd.testing import DaemonProcess, SmallDisk, run_cli, wait_until

CONFIG = """
[gateway]
sweep_interval = "200ms"
"""
T0 = datetime(2026, 3, 1, tzinfo=UTC)
# Root without the capabilities that let it read and write any file.
WITHOUT_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_with_history(path: Path, runs: int = 3000) -> None:
    """A store with one job and ``runs`` ended runs: a file of some size."""

    async def fill() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            job = Job(
                id="job0000001",
                name="history",
                schedule=Schedule(kind=ScheduleKind.EVERY, every_s=60, anchor=T0),
                payload=ExecPayload(command="true"),
                created_at=T0,
                updated_at=T0,
            )
            await store.add_job(job)
            await store.record_runs(
                [
                    Run(
                        run_id=f"run{n:013d}",
                        job_id=job.id,
                        job_name=job.name,
                        trigger=Trigger.SCHEDULE,
                        status=RunStatus.SKIPPED,
                        scheduled_for=T0 + timedelta(minutes=n),
                        queued_at=T0,
                        ended_at=T0,
                        error="history " * 20,
                        session_key=f"cron:{job.id}:run:{n}",
                    )
                    for n in range(runs)
                ]
            )
        finally:
            await store.close()

    anyio.run(fill)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def refused_start(state: Path, *, prefix: list[str] | None = None) -> tuple[int, str]:
    d = DaemonProcess(state, config=CONFIG, prefix=prefix or [])
    try:
        code = d.exit_code()
    finally:
        d.close()
    return code, d.log()


class TestDamagedStore:
    def test_random_bytes_in_the_middle_are_damage_and_nothing_is_written(
        self, state: Path
    ) -> None:
        """I11: 64 KiB of random bytes in the middle of the store: exit 7, a message that
        says how to keep a copy and recover, and the file's bytes unchanged (no instance
        row, no settlement written into it). `store check` says the same."""
        store = state / "gatewayd.db"
        state.mkdir(mode=0o700)
        store_with_history(store)
        size = store.stat().st_size
        assert size > 512 * 1024
        with store.open("r+b") as handle:
            handle.seek(size // 2)
            handle.write(os.urandom(64 * 1024))
        before = digest(store)

        code, log = refused_start(state)
        assert code == EXIT_STORE_DAMAGED, log
        assert "is damaged" in log and "Keep a copy" in log and ".recover" in log
        assert "move it aside" not in log
        assert digest(store) == before

        env = {**os.environ, "GATEWAYD_STATE_DIR": str(state)}
        check = run_cli(["store", "check"], env=env)
        assert check.code == EXIT_STORE_DAMAGED, check.stdout + check.stderr
        assert "quick_check" in check.stderr
        assert digest(store) == before

    def test_a_file_that_is_not_sqlite_is_refused(self, state: Path) -> None:
        state.mkdir(mode=0o700)
        store = state / "gatewayd.db"
        store.write_bytes(b"these are not the bytes of a database\n" * 100)
        before = digest(store)
        code, log = refused_start(state)
        assert code == EXIT_STORE_DAMAGED
        assert "not a gatewayd store" in log
        assert digest(store) == before

    def test_a_store_from_a_newer_gatewayd_is_named_and_kept(self, state: Path) -> None:
        """A schema version from the future: exit 8, 'newer', the file unchanged."""
        state.mkdir(mode=0o700)
        store = state / "gatewayd.db"
        store_with_history(store, runs=10)
        conn = sqlite3.connect(store)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        before = digest(store)
        code, log = refused_start(state)
        assert code == EXIT_STORE_TOO_NEW
        assert "newer gatewayd" in log
        assert digest(store) == before


class TestUnusableDisk:
    def test_a_read_only_file_system_is_named(self, tmp_path: Path) -> None:
        """A healthy store on a file system mounted read-only: exit 11, 'read-only'."""
        with SmallDisk(tmp_path / "fs") as disk:
            state = disk.path / "state"
            DaemonProcess(state, config=CONFIG, files_dir=tmp_path).start().close()
            store = state / "gatewayd.db"
            before = digest(store)
            disk.read_only(True)
            try:
                d = DaemonProcess(state, config=CONFIG, files_dir=tmp_path)
                code = d.exit_code()
                d.close()
                assert code == EXIT_READ_ONLY, d.log()
                assert "read-only" in d.log() and "not damaged" in d.log()
                assert digest(store) == before
            finally:
                disk.read_only(False)

    def test_a_refused_permission_is_named(self, state: Path) -> None:
        """A store this user may not read: exit 10, 'permission denied', unchanged."""
        DaemonProcess(state, config=CONFIG).start().close()
        store = state / "gatewayd.db"
        before = digest(store)
        store.chmod(0)
        try:
            code, log = refused_start(state, prefix=WITHOUT_DAC)
        finally:
            store.chmod(0o600)
        assert code == EXIT_PERMISSION, log
        assert "permission denied" in log and "not damaged" in log
        assert digest(store) == before


class TestBackup:
    def test_a_backup_taken_while_the_daemon_runs_is_complete_and_private(
        self, tmp_path: Path
    ) -> None:
        """`store backup DEST` makes a consistent, checked, private copy of a store in use;
        a DEST that exists is refused (exit 5) and left alone."""
        with DaemonProcess(tmp_path / "state", config=CONFIG) as d:
            for n in range(5):
                result = d.cli(
                    "cron", "add", "--name", f"j{n}", "--every", "1h", "--command", "true"
                )
                assert result.code == 0, result.stderr
            dest = tmp_path / "backup.db"
            done = d.cli("store", "backup", str(dest), "--json")
            assert done.code == 0, done.stderr
            assert done.json()["path"] == str(dest)
            assert dest.stat().st_mode & 0o777 == 0o600
            again = d.cli("store", "backup", str(dest))
            assert again.code == EXIT_CONFLICT
        names = sqlite3.connect(dest).execute("SELECT name FROM jobs ORDER BY name").fetchall()
        assert [n for (n,) in names] == [f"j{n}" for n in range(5)]


class TestFilesReplacedUnderTheDaemon:
    @pytest.mark.parametrize("how", ["deleted", "replaced"])
    def test_a_lost_wal_stops_writes_and_loses_nothing(self, how: str, tmp_path: Path) -> None:
        """I11: the WAL is deleted (or replaced) under a running daemon. Within a sweep it
        says so and takes no more writes (exit 12, naming the WAL); what it wrote after
        the loss was saved, and a restart finds every job."""
        state = tmp_path / "state"
        # Right after a sweep, with 3 s to the next one: one more write lands in the
        # lost WAL before the daemon can notice.
        d = DaemonProcess(state, config='[gateway]\nsweep_interval = "3s"\n')
        spec = {"schedule": {"kind": "every", "every_s": 3600}}
        spec["payload"] = {"kind": "exec", "command": "true"}
        try:
            d.start()
            d.call("cron.add", {"name": "before", **spec})
            d.messages.clear()
            d.wait_for_notify(
                lambda lines: any(line.startswith("STATUS=") for line in lines),
                timeout=10,
                what="a sweep",
            )
            wal = state / "gatewayd.db-wal"
            assert wal.exists()
            wal.unlink()
            if how == "replaced":
                wal.write_bytes(os.urandom(8192))
            d.call("cron.add", {"name": "after", **spec})

            def fault() -> dict[str, Any] | None:
                found: dict[str, Any] | None = d.call("gateway.status")["store"]["fault"]
                return found

            seen = wait_until(fault, timeout=5, what="the lost WAL to be noticed")
            assert seen["kind"] == "store_replaced"
            assert "write-ahead log" in seen["message"] and "saved" in seen["message"]
            refused = d.cli("cron", "add", "--name", "later", "--every", "1h", "--command", "true")
            assert refused.code == EXIT_IO_ERROR, refused.stderr
            assert "write-ahead log" in refused.stderr
            assert d.stop() == 0
            d.start()
            names = [j["name"] for j in d.call("cron.list", {"all": True})]
            assert names == ["after", "before"]
            assert d.call("gateway.status")["store"]["writable"] is True
        finally:
            d.close()
