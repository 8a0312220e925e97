"""The ``system_event`` runner: a line of text appended to the main session's inbox."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import orjson

from gatewayd.durations import format_time
from gatewayd.model import SystemEventPayload
from gatewayd.runners.base import ExecResult, Finished, RunContext


def inbox_path(state_dir: Path) -> Path:
    return state_dir / "sessions" / "main" / "inbox.jsonl"


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(line)


class SystemEventRunner:
    """Appends the event to the inbox, as one JSON line, and succeeds at once."""

    async def start(self, ctx: RunContext) -> Finished:
        payload = ctx.job.payload
        assert isinstance(payload, SystemEventPayload)
        entry = {
            "ts": format_time(ctx.run.queued_at),
            "text": payload.text,
            "job_id": ctx.job.id,
            "run_id": ctx.run.run_id,
        }
        line = orjson.dumps(entry) + b"\n"
        await anyio.to_thread.run_sync(_append, inbox_path(ctx.state_dir), line)
        return Finished(result=ExecResult(exit_code=0, summary=payload.text[:200]))
