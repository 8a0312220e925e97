"""The ``system_event`` runner: a line of text appended to the main session's inbox."""

from __future__ import annotations

import anyio.to_thread

from gatewayd.durations import format_time
from gatewayd.model import SystemEventPayload
from gatewayd.runners.base import ExecResult, Finished, RunContext
from gatewayd.sessions import append_jsonl, inbox_path
from gatewayd.workers import Offload


class SystemEventRunner:
    """Appends the event to the inbox, as one JSON line, and succeeds at once.

    ``offload`` does the appending off the event loop; with a single thread of its
    own, events land in the inbox in the order their runs started.
    """

    def __init__(self, offload: Offload = anyio.to_thread.run_sync) -> None:
        self._offload = offload

    async def start(self, ctx: RunContext) -> Finished:
        payload = ctx.job.payload
        assert isinstance(payload, SystemEventPayload)
        entry = {
            "ts": format_time(ctx.run.queued_at),
            "text": payload.text,
            "job_id": ctx.job.id,
            "run_id": ctx.run.run_id,
        }
        path = inbox_path(ctx.state_dir)
        await self._offload(lambda: append_jsonl(path, entry))
        return Finished(result=ExecResult(exit_code=0, summary=payload.text[:200]))
