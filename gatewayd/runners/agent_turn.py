"""The ``agent_turn`` runner: a message to an agent command, its reply as the run's summary.

``[agents.NAME]`` in the config names the command. The message is written to
the run's ``.in`` file and given to the agent on stdin, with the ``GATEWAYD_*``
environment; the agent runs under the same waiter as an exec run (its own
process group, an exit status that outlives the daemon). Its stdout is the
reply: it becomes the run's ``summary`` and is appended, after the message,
to the session's transcript (one JSON object per line). Its stderr goes to the
run's log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

import anyio.to_thread

from gatewayd import runfiles
from gatewayd.clock import Clock
from gatewayd.durations import format_time
from gatewayd.errors import SpawnFailed
from gatewayd.model import AgentSpec, AgentTurnPayload, Run
from gatewayd.runners.base import ExecResult, Execution, RunContext
from gatewayd.runners.exec import WaiterSettings, spawn_under_waiter
from gatewayd.sessions import append_jsonl, transcript_path
from gatewayd.settings import MAX_SUMMARY_BYTES
from gatewayd.views import JsonObject
from gatewayd.workers import Offload


def read_reply(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SUMMARY_BYTES + 1)
    except FileNotFoundError:
        return None
    text = data[:MAX_SUMMARY_BYTES].decode("utf-8", errors="replace").strip()
    if len(data) > MAX_SUMMARY_BYTES:
        text += "\n[reply truncated]"
    return text


class ReplyingExecution:
    """An agent's execution: on its end, reads the reply and writes the transcript."""

    def __init__(self, inner: Execution, *, run: Run, state_dir: Path, clock: Clock) -> None:
        self._inner = inner
        self._run = run
        self._state_dir = state_dir
        self._clock = clock
        self._result: ExecResult | None = None

    @property
    def pid(self) -> int | None:
        return self._inner.pid

    @property
    def pid_start(self) -> int | None:
        return self._inner.pid_start

    async def stop(self, grace_s: float) -> None:
        await self._inner.stop(grace_s)

    async def wait(self) -> ExecResult:
        if self._result is None:
            result = await self._inner.wait()
            run = self._run
            reply = await anyio.to_thread.run_sync(
                read_reply, runfiles.reply_path(self._state_dir, run.job_id, run.run_id)
            )
            if reply:
                entry = {
                    "ts": format_time(result.ended_at or self._clock.now()),
                    "role": "assistant",
                    "run_id": run.run_id,
                    "content": reply,
                }
                await anyio.to_thread.run_sync(
                    append_jsonl, transcript_path(self._state_dir, run.session_key), entry
                )
            self._result = replace(result, summary=reply or None)
        return self._result


class AgentTurnRunner:
    """Starts agent turns with the agents of the config."""

    def __init__(
        self,
        agents: Mapping[str, AgentSpec],
        *,
        clock: Clock,
        settings: WaiterSettings | None = None,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        self._agents = dict(agents)
        self._clock = clock
        self._settings = settings or WaiterSettings()
        self._offload = offload

    def wrap(self, inner: Execution, run: Run, state_dir: Path) -> ReplyingExecution:
        """The reply-reading execution of ``inner``: for re-adopted agent turns too."""
        return ReplyingExecution(inner, run=run, state_dir=state_dir, clock=self._clock)

    async def start(self, ctx: RunContext) -> ReplyingExecution:
        payload = ctx.job.payload
        assert isinstance(payload, AgentTurnPayload)
        spec = self._agents.get(payload.agent)
        if spec is None:
            known = ", ".join(sorted(self._agents)) or "none"
            raise SpawnFailed(
                f"no agent {payload.agent!r} is configured (configured: {known}); "
                f"add [agents.{payload.agent}] to the config"
            )
        run = ctx.run
        message_file = runfiles.input_path(ctx.state_dir, run.job_id, run.run_id)
        entry = {
            "ts": format_time(run.queued_at),
            "role": "user",
            "run_id": run.run_id,
            "content": payload.message,
        }
        transcript = transcript_path(ctx.state_dir, run.session_key)
        await self._offload(
            partial(_write_message, message_file, payload.message, transcript, entry)
        )
        env = {**ctx.env, **dict(spec.env)}
        inner = await spawn_under_waiter(
            replace(ctx, env=env),
            list(spec.command),
            cwd=spec.cwd,
            settings=self._settings,
            offload=self._offload,
            stdin_path=message_file,
            stdout_path=runfiles.reply_path(ctx.state_dir, run.job_id, run.run_id),
        )
        return self.wrap(inner, run, ctx.state_dir)


def _write_message(path: Path, message: str, transcript: Path, entry: JsonObject) -> None:
    """The message for the agent's stdin, and its line in the session's transcript."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(message if message.endswith("\n") else message + "\n", encoding="utf-8")
    append_jsonl(transcript, entry)
