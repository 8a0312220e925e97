"""Sessions: their rows (moved by lifecycle events) and their files.

An isolated session ``cron:<job_id>:run:<run_id>`` lives for one run; ``main``
is shared. The row is written with the lifecycle ``start`` event and made
terminal with ``end`` or ``error``, in the same transaction as the event.
Each session may have a transcript (``transcript.jsonl``); ``main`` also has an
inbox of system events (``inbox.jsonl``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any

import orjson

from gatewayd.events import Event, SessionEnded, SessionFailed, SessionStarted
from gatewayd.model import MAIN_SESSION_KEY, ErrorKind, Session, SessionStatus
from gatewayd.views import JsonObject

_STATUS_OF_ERROR: dict[ErrorKind | None, SessionStatus] = {
    ErrorKind.TIMEOUT: SessionStatus.TIMED_OUT,
    ErrorKind.CANCELLED: SessionStatus.CANCELLED,
    ErrorKind.INTERRUPTED: SessionStatus.INTERRUPTED,
}
TAIL_ENTRIES = 20


def session_row(event: Event) -> Session | None:
    """The session row a lifecycle event moves: started on ``start``, ended on ``end``/``error``.

    The bus writes it in the same transaction as the event itself.
    """
    if isinstance(event, SessionStarted):
        return Session(
            key=event.session_key,
            session_id=event.session_id,
            job_id=event.job_id,
            run_id=event.run_id,
            status=SessionStatus.RUNNING,
            started_at=event.ts,
        )
    if isinstance(event, SessionEnded | SessionFailed):
        status = SessionStatus.DONE
        if isinstance(event, SessionFailed):
            status = _STATUS_OF_ERROR.get(event.error_kind, SessionStatus.FAILED)
        return Session(
            key=event.session_key,
            session_id=event.session_id,
            job_id=event.job_id,
            run_id=event.run_id,
            status=status,
            ended_at=event.ts,
            error=event.error,
            error_kind=event.error_kind,
            stop_reason=event.stop_reason,
        )
    return None


def session_dir(state_dir: Path, key: str) -> Path:
    """``sessions/main`` or ``sessions/cron/<job_id>/<run_id>``."""
    if key == MAIN_SESSION_KEY:
        return state_dir / "sessions" / "main"
    parts = key.split(":")
    if len(parts) == 4 and parts[0] == "cron" and parts[2] == "run":
        return state_dir / "sessions" / "cron" / parts[1] / parts[3]
    return state_dir / "sessions" / "other" / key.replace("/", "_")


def transcript_path(state_dir: Path, key: str) -> Path:
    return session_dir(state_dir, key) / "transcript.jsonl"


@functools.lru_cache(maxsize=8)
def inbox_path(state_dir: Path) -> Path:
    return session_dir(state_dir, MAIN_SESSION_KEY) / "inbox.jsonl"


def append_jsonl(path: Path, *entries: JsonObject) -> None:
    """Append entries as JSON lines, in one write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(e) + b"\n" for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def tail_jsonl(path: Path, count: int = TAIL_ENTRIES) -> list[Any]:
    """The last ``count`` entries of a JSON-lines file (none if it does not exist)."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 256 * 1024))
        lines = handle.read().splitlines()[-count:]
        entries = []
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                entries.append(orjson.loads(line))
        return entries
    return []
