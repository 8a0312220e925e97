"""The ``exec`` runner: a command in its own process group, its output in a file."""

from __future__ import annotations

import shlex
import signal
import subprocess
from typing import BinaryIO

import anyio
import anyio.abc
import anyio.to_thread

from gatewayd.errors import SpawnFailed
from gatewayd.model import ExecPayload
from gatewayd.runners.base import ExecResult, RunContext
from gatewayd.runners.procgroup import group_members, read_tail, signal_group

# How often a stopping process group is checked for stragglers during its grace period.
_GROUP_CHECK_S = 0.05


def command_argv(payload: ExecPayload) -> list[str]:
    """The argv of an exec payload: the command split with shlex, or the shell script."""
    if payload.shell is not None:
        return ["/bin/sh", "-c", payload.shell]
    assert payload.command is not None
    return shlex.split(payload.command)


class ProcessExecution:
    """A command running as the leader of its own process group."""

    def __init__(self, process: anyio.abc.Process, ctx: RunContext, tail_bytes: int) -> None:
        self._process = process
        self._ctx = ctx
        self._tail_bytes = tail_bytes
        self._result: ExecResult | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> ExecResult:
        if self._result is None:
            code = await self._process.wait()
            tail = await anyio.to_thread.run_sync(read_tail, self._ctx.log_path, self._tail_bytes)
            if self._result is None:
                if code < 0:
                    sig = -code
                    self._result = ExecResult(
                        signal=sig,
                        output_tail=tail,
                        error=f"killed by signal {signal.Signals(sig).name}",
                    )
                else:
                    error = None if code == 0 else f"exited with code {code}"
                    self._result = ExecResult(exit_code=code, output_tail=tail, error=error)
        return self._result

    async def stop(self, grace_s: float) -> None:
        pgid = self._process.pid
        if not signal_group(pgid, signal.SIGTERM):
            await self._process.wait()
            return
        with anyio.move_on_after(grace_s):
            await self._process.wait()
            # No event tells when the last member of a group is gone: check, bounded by grace.
            while await anyio.to_thread.run_sync(group_members, pgid):  # noqa: ASYNC110
                await anyio.sleep(_GROUP_CHECK_S)
        signal_group(pgid, signal.SIGKILL)
        await self._process.wait()


class ExecRunner:
    """Starts exec payloads: argv or ``/bin/sh -c``, stdin from /dev/null, output to the log."""

    def __init__(self, *, tail_bytes: int = 4096) -> None:
        self._tail_bytes = tail_bytes

    async def start(self, ctx: RunContext) -> ProcessExecution:
        payload = ctx.job.payload
        assert isinstance(payload, ExecPayload)
        argv = command_argv(payload)
        if not argv:
            raise SpawnFailed("the command is empty")
        try:
            log = await anyio.to_thread.run_sync(_open_log, ctx)
        except OSError as exc:
            raise SpawnFailed(
                f"cannot open the run log {ctx.log_path}: {exc.strerror or exc}"
            ) from None
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=payload.cwd,
                env=dict(ctx.env),
                start_new_session=True,
            )
        except OSError as exc:
            where = f" in {payload.cwd}" if payload.cwd else ""
            raise SpawnFailed(
                f"cannot start {argv[0]!r}{where}: {exc.strerror or exc}",
                data={"errno": exc.errno},
            ) from None
        finally:
            log.close()
        return ProcessExecution(process, ctx, self._tail_bytes)


def _open_log(ctx: RunContext) -> BinaryIO:
    ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    return ctx.log_path.open("ab")
