"""The files a run leaves in the state directory, beside its record in the store.

``runs/<job_id>/<run_id>.log`` holds the run's output; ``<run_id>.exit`` is
written by the run's waiter when its command ends, so that the exit status
outlives the daemon. An agent turn also has ``<run_id>.in`` (its message, on
stdin) and ``<run_id>.out`` (its reply, from stdout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from gatewayd.model import Run


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


def read_exit_status(path: Path) -> tuple[int, datetime] | None:
    """The status a waiter wrote and when it wrote it, or ``None`` if it wrote none."""
    try:
        text = path.read_text().strip()
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
    if not text.lstrip("-").isdigit():
        return None
    return int(text), written


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
