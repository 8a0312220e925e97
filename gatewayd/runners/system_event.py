"""The ``system_event`` runner: a line of text appended to the main session's inbox."""

from __future__ import annotations

import anyio.to_thread

from gatewayd.durations import format_time
from gatewayd.model import SystemEventPayload
from gatewayd.runners.base import ExecResult, Finished, RunContext
from gatewayd.sessions import append_jsonl, inbox_path


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
        await anyio.to_thread.run_sync(append_jsonl, inbox_path(ctx.state_dir), entry)
        return Finished(result=ExecResult(exit_code=0, summary=payload.text[:200]))
