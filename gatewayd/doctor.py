"""``gatewayd doctor``: check a store's run records against the invariants, offline.

It opens the store read-only, next to a running daemon or without one, and
reports every violation of:

* ``running-without-process``: a run is ``running`` but its process is gone
  (or, with no daemon serving the state directory, a run is live with no process).
  A run whose process ended while no daemon ran, after writing its exit status,
  is not a violation but ``pending``: the next start records that status;
* ``slot-used-twice``: two runs claim one ``(job_id, scheduled_for)`` slot;
* ``overlap-skip``: a job whose overlap is ``skip`` has more than one live run
  (queued catch-up runs, which wait their turn in line, do not count);
* ``one-ending``: a run's status, ``started_at`` and ``ended_at`` disagree, so
  it has no ending, or an ending it could not have had;
* ``job-out-of-range``: a stored job holds a value outside its field's range
  (stored by a gatewayd that did not check it); edit the field to fix it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from gatewayd import runfiles
from gatewayd.durations import format_time
from gatewayd.errors import InvalidInput, StoreCorrupt, StoreError
from gatewayd.jobspec import job_from_spec
from gatewayd.model import JobSource, Run, RunStatus, Trigger
from gatewayd.paths import DB_NAME, LOCK_NAME
from gatewayd.runfiles import read_exit_status
from gatewayd.runners.processes import is_running
from gatewayd.store.sqlite import RUN_COLUMNS, run_from_row
from gatewayd.store.sqlrows import from_us

# A daemon may be recording a run's ending while we look: look again this much later.
RECHECK_AFTER_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    rule: str
    message: str
    run_id: str | None = None
    job_id: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "rule": self.rule,
            "run_id": self.run_id,
            "job_id": self.job_id,
            "message": self.message,
        }


def daemon_serves(state_dir: Path) -> bool:
    """Whether a daemon holds the state directory's lock."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _connect(state_dir: Path) -> sqlite3.Connection:
    path = state_dir / DB_NAME
    if not path.exists():
        raise StoreError(f"there is no store at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("SELECT count(*) FROM runs").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"cannot read the store {path}: {exc}") from None
    return conn


def _runs(conn: sqlite3.Connection, where: str, params: tuple[object, ...] = ()) -> list[Run]:
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE {where}", params).fetchall()
    return [run_from_row(r) for r in rows]


def _process_gone(run: Run, *, serving: bool) -> bool:
    if run.pid is not None:
        return not is_running(run.pid, run.pid_start)
    return not serving


def _running_without_process(
    conn: sqlite3.Connection, state_dir: Path, *, serving: bool
) -> Iterator[Violation]:
    suspects = [
        r
        for r in _runs(conn, "status IN ('queued', 'running')")
        if (r.status is RunStatus.RUNNING or not serving) and _process_gone(r, serving=serving)
    ]
    if suspects and serving:
        time.sleep(RECHECK_AFTER_S)
    for run in suspects:
        again = _runs(conn, "run_id = ?", (run.run_id,))
        if not again or again[0].status.is_terminal:
            continue
        if not _process_gone(again[0], serving=serving):
            continue
        detail = f"pid {run.pid} is not running" if run.pid else "it has no process"
        if not serving:
            detail += " and no daemon serves the state directory"
        written = read_exit_status(runfiles.exit_path(state_dir, run.job_id, run.run_id))
        if written is not None and not serving:
            yield Violation(
                rule="pending",
                run_id=run.run_id,
                job_id=run.job_id,
                message=f"run {run.run_id} ended with status {written.status} at "
                f"{format_time(written.written_at)} while no daemon ran; the next start records it",
            )
            continue
        yield Violation(
            rule="running-without-process",
            run_id=run.run_id,
            job_id=run.job_id,
            message=f"run {run.run_id} is {run.status.value}, but {detail}",
        )


def _slots_used_twice(conn: sqlite3.Connection) -> Iterator[Violation]:
    rows = conn.execute(
        "SELECT job_id, scheduled_for, count(*) FROM runs WHERE scheduled_for IS NOT NULL "
        "AND trigger != 'retry' GROUP BY job_id, scheduled_for HAVING count(*) > 1"
    ).fetchall()
    for job_id, slot, count in rows:
        yield Violation(
            rule="slot-used-twice",
            job_id=job_id,
            message=f"job {job_id} has {count} runs for the slot {from_us(slot)}",
        )


def _overlap_skip(conn: sqlite3.Connection) -> Iterator[Violation]:
    skip_jobs = {
        job_id
        for job_id, spec in conn.execute("SELECT id, spec FROM jobs")
        if orjson.loads(spec).get("overlap", "skip") == "skip"
    }
    live: dict[str, list[Run]] = {}
    for run in _runs(conn, "status IN ('queued', 'running')"):
        waiting_catchup = run.status is RunStatus.QUEUED and run.trigger is Trigger.CATCHUP
        if run.job_id in skip_jobs and not waiting_catchup:
            live.setdefault(run.job_id, []).append(run)
    for job_id, runs in live.items():
        if len(runs) > 1:
            yield Violation(
                rule="overlap-skip",
                job_id=job_id,
                message=f"job {job_id} has overlap skip but {len(runs)} live runs: "
                + ", ".join(f"{r.run_id} ({r.status.value})" for r in runs),
            )


def _one_ending(conn: sqlite3.Connection) -> Iterator[Violation]:
    checks = (
        ("status IN ('queued', 'running') AND ended_at IS NOT NULL", "is live but has ended_at"),
        ("status = 'running' AND started_at IS NULL", "is running but never started"),
        ("status = 'queued' AND started_at IS NOT NULL", "is queued but has started"),
        ("status NOT IN ('queued', 'running') AND ended_at IS NULL", "has ended without ended_at"),
        ("ended_at < started_at", "ended before it started"),
        (
            "status NOT IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', "
            "'cancelled', 'skipped', 'interrupted')",
            "has an unknown status",
        ),
    )
    for where, problem in checks:
        for run_id, job_id, status in conn.execute(
            f"SELECT run_id, job_id, status FROM runs WHERE {where}"
        ):
            yield Violation(
                rule="one-ending",
                run_id=run_id,
                job_id=job_id,
                message=f"run {run_id} ({status}) {problem}",
            )


def _jobs_out_of_range(conn: sqlite3.Connection) -> Iterator[Violation]:
    for job_id, source, spec, created in conn.execute(
        "SELECT id, source, spec, created_at FROM jobs"
    ):
        at = from_us(created)
        assert at is not None
        try:
            job_from_spec(
                orjson.loads(spec),
                job_id=job_id,
                source=JobSource(source),
                now=None,
                created_at=at,
                updated_at=at,
                allow_past_at=True,
            )
        except InvalidInput as exc:
            yield Violation(
                rule="job-out-of-range",
                job_id=job_id,
                message=f"job {job_id}: {exc.message}; change it with `gatewayd cron edit`",
            )


def examine(state_dir: Path) -> list[Violation]:
    """Every violation (and every ``pending`` ending) found in the store of ``state_dir``."""
    serving = daemon_serves(state_dir)
    conn = _connect(state_dir)
    try:
        return [
            *_running_without_process(conn, state_dir, serving=serving),
            *_slots_used_twice(conn),
            *_overlap_skip(conn),
            *_one_ending(conn),
            *_jobs_out_of_range(conn),
        ]
    finally:
        conn.close()


def violations_of(found: list[Violation]) -> list[Violation]:
    return [v for v in found if v.rule != "pending"]


def report(found: list[Violation], *, as_json: bool) -> str:
    violations = violations_of(found)
    pending = [v for v in found if v.rule == "pending"]
    if as_json:
        return orjson.dumps(
            {
                "ok": not violations,
                "violations": [v.to_json() for v in violations],
                "pending": [v.to_json() for v in pending],
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    lines = [f"{v.rule}: {v.message}" for v in found]
    if not violations:
        lines.append("no violation found")
    return "\n".join(lines)
