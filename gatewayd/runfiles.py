"""The files a run leaves in the state directory, beside its record in the store.

``runs/<job_id>/<run_id>.log`` holds the run's output; ``<run_id>.exit`` is
written by the run's waiter when its command ends, so that the exit status
outlives the daemon. The daemon makes the exit file before the run starts, with
room for the status in it (see :func:`reserve_exit_file`), so that the waiter
can write it even on a full disk. An agent turn also has ``<run_id>.in`` (its
message, on stdin) and ``<run_id>.out`` (its reply, from stdout). Every file here
is private to the daemon's user.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gatewayd.model import Instance, Run

# What an exit file holds before its waiter writes over it: room for "<status> <pump pid>".
EXIT_ROOM = b" " * 40 + b"\n"


def run_dir(state_dir: Path, job_id: str) -> Path:
    return state_dir / "runs" / job_id


def log_path(state_dir: Path, job_id: str, run_id: str) -> Path:
    return run_dir(state_dir, job_id) / f"{run_id}.log"


def exit_path(state_dir: Path, job_id: str, run_id: str) -> Path:
    return run_dir(state_dir, job_id) / f"{run_id}.exit"


def input_path(state_dir: Path, job_id: str, run_id: str) -> Path:
    """What an agent turn reads on stdin."""
    return run_dir(state_dir, job_id) / f"{run_id}.in"


def reply_path(state_dir: Path, job_id: str, run_id: str) -> Path:
    """What an agent turn wrote on stdout."""
    return run_dir(state_dir, job_id) / f"{run_id}.out"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitRecord:
    """What a waiter wrote: the command's status, when, and its output pump's pid (if any)."""

    status: int
    written_at: datetime
    pump_pid: int | None = None


def reserve_exit_file(path: Path) -> None:
    """Make a run's exit file, private, with the room its waiter writes the status into."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, EXIT_ROOM)
    finally:
        os.close(fd)


def read_exit_status(path: Path) -> ExitRecord | None:
    """What the waiter wrote, or ``None`` if it wrote nothing (yet)."""
    try:
        fields = path.read_text(errors="replace").split()
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
    if not fields or not fields[0].lstrip("-").isdigit():
        return None
    pump = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    return ExitRecord(status=int(fields[0]), written_at=written, pump_pid=pump or None)


def delete_run_files(state_dir: Path, runs: Iterable[Run]) -> None:
    for run in runs:
        for path in (
            log_path(state_dir, run.job_id, run.run_id),
            exit_path(state_dir, run.job_id, run.run_id),
            input_path(state_dir, run.job_id, run.run_id),
            reply_path(state_dir, run.job_id, run.run_id),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def state_dir_of(owner: Instance | None, ours: Path) -> Path:
    """Where a run's files are: in its owner's state directory (``ours``, if not recorded)."""
    if owner is None or owner.state_dir is None:
        return ours
    return Path(owner.state_dir)
