"""OpenClaw's cron store in each of its three shapes, read and never written.

1. ``jobs.json`` alone, ``{"version": 1, "jobs": [...]}`` in JSON5, each job's
   runtime ``state`` embedded in it;
2. ``jobs.json`` for definitions, beside ``jobs-state.json``, ``{"jobs": {ID:
   state}}``;
3. the SQLite state database of later releases, ``~/.openclaw/state/openclaw.sqlite``,
   whose ``cron_jobs`` rows hold ``job_json`` and ``state_json``, and whose
   run-log tables (``cron_run_logs``) hold the history.

History of the file shapes is ``runs/<jobId>.jsonl`` beside ``jobs.json``. The
SQLite database is copied, with its write-ahead log, into a private directory
and read there, so that neither OpenClaw's files nor its locks are touched.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5

from gatewayd.errors import InvalidInput, NotFound
from gatewayd.importers.openclaw.history import parse_line, read_entries, read_lines
from gatewayd.importers.openclaw.jobs import job_id_of, unwrapped
from gatewayd.importers.plan import History

JOBS_FILE = "jobs.json"
STATE_FILE = "jobs-state.json"
SQLITE_FILE = Path("..") / "state" / "openclaw.sqlite"
RUNS_DIR = "runs"
# Larger than any store OpenClaw writes; a file beyond it is refused, not read.
MAX_FILE_BYTES = 64 * 1024 * 1024
EXPORT_HINT = (
    "export the jobs first with `openclaw cron list --all --json > DIR/jobs.json` "
    "(DIR a new directory), then run `gatewayd import openclaw DIR`"
)


class StoreShape(enum.StrEnum):
    """Which of OpenClaw's three cron stores was read."""

    JOBS_FILE = "jobs.json"
    SPLIT_FILES = "jobs.json+jobs-state.json"
    SQLITE = "sqlite"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawJob:
    """A job as OpenClaw stored it, with its runtime state and its history."""

    body: Any
    state: Mapping[str, Any] | None
    history: History
    history_telemetry: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RawStore:
    shape: StoreShape
    paths: tuple[str, ...]
    jobs: tuple[RawJob, ...]
    notes: tuple[str, ...] = ()


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path}: {size} bytes, more than an OpenClaw store holds")
        return path.read_bytes()
    except PermissionError:
        raise InvalidInput(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror}") from None


def _json5(path: Path) -> Any:
    try:
        return json5.loads(_read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: not valid JSON5: {exc}") from None


def _job_list(document: Any, path: Path) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping) and isinstance(document.get("jobs"), list):
        return list(document["jobs"])
    raise InvalidInput(f'{path}: expected {{"jobs": [...]}}, got {type(document).__name__}')


def _file_history(directory: Path, job_id: str) -> tuple[History, bool]:
    """``runs/<jobId>.jsonl`` (or, after OpenClaw moved it into SQLite, its ``.migrated``)."""
    if "/" in job_id or "\\" in job_id or "\0" in job_id or job_id in (".", ".."):
        return History(), False
    for suffix in (".jsonl", ".jsonl.migrated"):
        path = directory / RUNS_DIR / f"{job_id}{suffix}"
        if path.is_file():
            return read_lines(_read_bytes(path), source=str(path))
    return History(), False


def _from_files(directory: Path, notes: list[str]) -> RawStore:
    jobs_path = directory / JOBS_FILE
    state_path = directory / STATE_FILE
    bodies = _job_list(_json5(jobs_path), jobs_path)
    states: Mapping[str, Any] = {}
    shape = StoreShape.JOBS_FILE
    paths = [str(jobs_path)]
    if state_path.is_file():
        shape = StoreShape.SPLIT_FILES
        paths.append(str(state_path))
        document = _json5(state_path)
        found = document.get("jobs") if isinstance(document, Mapping) else None
        if not isinstance(found, Mapping):
            raise InvalidInput(f'{state_path}: expected {{"jobs": {{ID: state}}}}')
        states = found
    jobs = []
    for body in bodies:
        job_id = job_id_of(unwrapped(body))
        state = states.get(job_id) if job_id is not None else None
        history, telemetry = _file_history(directory, job_id) if job_id else (History(), False)
        jobs.append(
            RawJob(
                body=body,
                state=state if isinstance(state, Mapping) else None,
                history=history,
                history_telemetry=telemetry,
            )
        )
    return RawStore(shape=shape, paths=tuple(paths), jobs=tuple(jobs), notes=tuple(notes))


@contextmanager
def _private_copy(database: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a copy of ``database`` and its write-ahead log."""
    with tempfile.TemporaryDirectory(prefix="gatewayd-import-") as scratch:
        copy = Path(scratch) / "openclaw.sqlite"
        shutil.copyfile(database, copy)
        wal = database.with_name(f"{database.name}-wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name(f"{copy.name}-wal"))
        conn = sqlite3.connect(copy)
        try:
            conn.execute("PRAGMA query_only = ON")
            yield conn
        finally:
            conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}


_ENTRY_COLUMNS = {
    "ts": "ts",
    "status": "status",
    "error": "error",
    "summary": "summary",
    "run_at_ms": "runAtMs",
    "duration_ms": "durationMs",
    "trigger": "trigger",
}


def _run_tables(conn: sqlite3.Connection) -> list[tuple[str, set[str]]]:
    """The run-log tables: named like ``cron%run%``, keyed by ``job_id``, with an entry or
    its columns."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'cron%run%' "
            "ORDER BY name"
        )
    ]
    found = []
    for name in names:
        columns = _columns(conn, name)
        if "job_id" in columns and ("entry_json" in columns or {"ts", "status"} <= columns):
            found.append((name, columns))
    return found


def _row_entries(
    conn: sqlite3.Connection, table: str, columns: set[str], job_id: str
) -> Iterator[Any]:
    if "entry_json" in columns:
        for (body,) in conn.execute(
            f'SELECT entry_json FROM "{table}" WHERE job_id = ?', (job_id,)
        ):
            yield parse_line(body)
        return
    picked = [c for c in _ENTRY_COLUMNS if c in columns]
    query = f'SELECT {", ".join(picked)} FROM "{table}" WHERE job_id = ?'
    for row in conn.execute(query, (job_id,)):
        yield {_ENTRY_COLUMNS[c]: v for c, v in zip(picked, row, strict=True) if v is not None}


def _from_sqlite(database: Path, directory: Path, notes: list[str]) -> RawStore:
    try:
        with _private_copy(database) as conn:
            columns = _columns(conn, "cron_jobs")
            if not {"job_id", "job_json"} <= columns:
                raise InvalidInput(
                    f"{database}: no cron_jobs table with job_json that gatewayd can read; "
                    + EXPORT_HINT
                )
            state = "state_json" if "state_json" in columns else "NULL"
            rows = conn.execute(
                f"SELECT job_id, job_json, {state} FROM cron_jobs ORDER BY rowid"
            ).fetchall()
            tables = _run_tables(conn)
            if not tables:
                notes.append(
                    f"{database} holds no run-log table gatewayd can read; history was "
                    f"looked for in {directory / RUNS_DIR} instead"
                )
            jobs = [_sqlite_job(conn, tables, directory, row) for row in rows]
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{database}: cannot be read as SQLite ({exc}); {EXPORT_HINT}") from None
    except OSError as exc:
        raise InvalidInput(f"{database}: cannot be read: {exc.strerror}") from None
    return RawStore(
        shape=StoreShape.SQLITE, paths=(str(database),), jobs=tuple(jobs), notes=tuple(notes)
    )


def _sqlite_job(
    conn: sqlite3.Connection,
    tables: list[tuple[str, set[str]]],
    directory: Path,
    row: tuple[Any, ...],
) -> RawJob:
    job_id, body, state = row
    parsed = parse_line(body)
    if isinstance(parsed, Mapping) and job_id_of(parsed) is None:
        parsed = {**parsed, "id": job_id}
    if not tables:
        history, telemetry = _file_history(directory, str(job_id))
    else:
        entries = [e for name, columns in tables for e in _row_entries(conn, name, columns, job_id)]
        history, telemetry = read_entries(entries, source=", ".join(name for name, _ in tables))
    loaded_state = parse_line(state)
    return RawJob(
        body=parsed if parsed is not None else {"id": job_id},
        state=loaded_state if isinstance(loaded_state, Mapping) else None,
        history=history,
        history_telemetry=telemetry,
    )


def _database_of(directory: Path) -> Path | None:
    for candidate in (directory / SQLITE_FILE, directory / "openclaw.sqlite"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def read_store(directory: Path) -> RawStore:
    """OpenClaw's cron store under ``directory`` (``~/.openclaw/cron``), in the shape found.

    The SQLite database wins when it holds jobs (OpenClaw moved the files into it,
    renaming them ``.migrated``); else ``jobs.json``, with ``jobs-state.json`` if it
    is there.
    """
    notes: list[str] = []
    if directory.is_file() and directory.suffix in (".sqlite", ".db"):
        return _from_sqlite(directory.resolve(), directory.parent, notes)
    if not directory.is_dir():
        raise NotFound(f"{directory}: no such directory")
    database = _database_of(directory)
    files = (directory / JOBS_FILE).is_file()
    if database is not None:
        found = _from_sqlite(database, directory, notes)
        if found.jobs or not files:
            if files:
                notes.append(f"{directory / JOBS_FILE} was not read: {database} holds the jobs")
            return dataclasses.replace(found, notes=tuple(notes))
        notes.append(f"{database} holds no jobs: read {directory / JOBS_FILE}")
    if files:
        return _from_files(directory, notes)
    raise NotFound(
        f"{directory}: no OpenClaw cron store (looked for {JOBS_FILE}, {STATE_FILE} and "
        f"{SQLITE_FILE})"
    )
