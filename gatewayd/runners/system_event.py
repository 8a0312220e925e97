"""The ``system_event`` runner: a line of text appended to the main session's inbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread

from gatewayd.durations import format_time
from gatewayd.model import SystemEventPayload
from gatewayd.runners.base import ExecResult, Finished, RunContext
from gatewayd.sessions import append_jsonl, inbox_path
from gatewayd.workers import WorkerPool


class SystemEventRunner:
    """Appends the event to the inbox, as one JSON line, and succeeds at once.

    The appends are made in order by one thread of the runner's own.
    """

    def __init__(self, files: WorkerPool[None]) -> None:
        self._files = files

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
        await self._files.run(lambda _: append_jsonl(path, entry))
        return Finished(result=ExecResult(exit_code=0, summary=payload.text[:200]))


@asynccontextmanager
async def open_system_event_runner() -> AsyncIterator[SystemEventRunner]:
    """A runner whose appending thread ends, its queue done, when the context is left."""
    files: WorkerPool[None] = WorkerPool(lambda: None, size=1, name="gatewayd-inbox")
    files.start()
    try:
        yield SystemEventRunner(files)
    finally:
        await anyio.to_thread.run_sync(files.stop)
