"""`gatewayd doctor`: each invariant it checks is caught when a store breaks it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from gatewayd.doctor import examine
from gatewayd.model import (
    ExecPayload,
    Job,
    Overlap,
    Run,
    RunOutcome,
    RunStatus,
    Schedule,
    ScheduleKind,
    Trigger,
)
from gatewayd.store import SQLiteStore
from gatewayd.store.location import embedded

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def job(job_id: str, overlap: Overlap = Overlap.SKIP) -> Job:
    return Job(
        id=job_id,
        name=job_id,
        schedule=Schedule(kind=ScheduleKind.EVERY, every_s=60, anchor=T0),
        payload=ExecPayload(command="true"),
        overlap=overlap,
        created_at=T0,
        updated_at=T0,
    )


def run(run_id: str, job_id: str = "j1", **kw: object) -> Run:
    fields: dict[str, object] = {
        "run_id": run_id,
        "job_id": job_id,
        "job_name": job_id,
        "trigger": Trigger.MANUAL,
        "status": RunStatus.QUEUED,
        "queued_at": T0,
        "session_key": "s",
    }
    fields.update(kw)
    return Run(**fields)  # type: ignore[arg-type]


async def build(state_dir: Path) -> None:
    store = SQLiteStore(state_dir / "gatewayd.db")
    await store.open()
    await store.add_job(job("j1"))
    await store.add_job(job("j2", Overlap.ALLOW))
    await store.record_runs([run("fine")])
    await store.start_run("fine", started_at=T0, owner="i", pid=os.getpid())
    await store.finish_run("fine", RunOutcome(status=RunStatus.SUCCEEDED, ended_at=T0))
    # A run recorded running whose process is long gone.
    await store.record_runs([run("ghost")])
    await store.start_run("ghost", started_at=T0, owner="i", pid=2**22 - 7, pid_start=1)
    # A second live run of a skip job; a job with allow may have many.
    await store.record_runs([run("second")])
    await store.record_runs([run("a1", "j2"), run("a2", "j2")])
    await store.close()


def break_store(state_dir: Path) -> None:
    """Damage the records in ways the store's own guards never allow."""
    conn = sqlite3.connect(state_dir / "gatewayd.db")
    conn.execute("DROP INDEX runs_slot")
    slot = 1_000_000
    for run_id in ("dup1", "dup2"):
        conn.execute(
            "INSERT INTO runs (run_id, job_id, job_name, trigger, status, scheduled_for, "
            "queued_at, started_at, ended_at, session_key, attempt) "
            "VALUES (?, 'j2', 'j2', 'schedule', 'succeeded', ?, 0, 1, 2, 's', 1)",
            (run_id, slot),
        )
    conn.execute(
        "INSERT INTO runs (run_id, job_id, job_name, trigger, status, queued_at, started_at, "
        "session_key, attempt) VALUES ('endless', 'j2', 'j2', 'manual', 'failed', 0, 1, 's', 1)"
    )
    conn.commit()
    conn.close()


class TestDoctor:
    async def test_every_rule_is_caught(self, tmp_path: Path) -> None:
        await build(tmp_path)
        break_store(tmp_path)
        found = {
            (v.rule, v.run_id or v.job_id) for v in await examine(embedded(tmp_path), tmp_path)
        }
        assert ("running-without-process", "ghost") in found
        assert ("slot-used-twice", "j2") in found
        assert ("overlap-skip", "j1") in found
        assert ("one-ending", "endless") in found
        assert not any(key == "fine" for _, key in found)
        assert not any(rule == "overlap-skip" and key == "j2" for rule, key in found)

    async def test_cli_exit_code(self, tmp_path: Path) -> None:
        """A clean store exits 0; a store with a violation exits non-zero and names it."""
        store = SQLiteStore(tmp_path / "gatewayd.db")
        await store.open()
        await store.add_job(job("j1"))
        await store.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYD_")}
        argv = [sys.executable, "-m", "gatewayd", "doctor", "--state-dir", str(tmp_path)]
        clean = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert (clean.returncode, clean.stdout.strip()) == (0, "no violation found")
        await build(tmp_path / "broken")
        argv[-1] = str(tmp_path / "broken")
        broken = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert broken.returncode == 1
        assert "running-without-process: run ghost is running" in broken.stdout

    async def test_a_run_that_ended_offline_is_pending(self, tmp_path: Path) -> None:
        """A run whose waiter wrote its status while no daemon ran is pending, not lost."""
        store = SQLiteStore(tmp_path / "gatewayd.db")
        await store.open()
        await store.add_job(job("j1"))
        await store.record_runs([run("done")])
        await store.start_run("done", started_at=T0, owner="i", pid=2**22 - 7, pid_start=1)
        await store.close()
        exit_file = tmp_path / "runs" / "j1" / "done.exit"
        exit_file.parent.mkdir(parents=True)
        exit_file.write_text("0\n")
        found = await examine(embedded(tmp_path), tmp_path)
        assert [(v.rule, v.run_id) for v in found] == [("pending", "done")]
        assert "the next start records it" in found[0].message
