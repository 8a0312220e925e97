"""The ``exec`` runner: a command in its own process group, under a waiter that outlives us.

Each command runs under a small ``/bin/sh`` waiter (see
:mod:`gatewayd.runners.spawn`), the leader of a new session and process group:
it runs the command, then writes its exit status into the run's ``.exit`` file
and exits with it. Output goes straight to the run's log file, never through a
pipe, so that neither the output nor the exit status depends on the daemon
staying alive.

A shell reports a child killed by signal N as status 128 + N; statuses 129 to
192 are therefore read as signals.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.abc
import anyio.to_thread

from gatewayd.errors import SpawnFailed
from gatewayd.model import ExecPayload
from gatewayd.runfiles import read_exit_status
from gatewayd.runners.base import ExecResult, RunContext
from gatewayd.runners.processes import (
    group_members,
    is_running,
    process_start_time,
    read_tail,
    signal_group,
    signal_of_status,
    wait_for_exit,
)
from gatewayd.runners.spawn import (
    PIDFD,
    Child,
    Launch,
    SpawnedChild,
    open_waiter,
    spawn_waiter,
)
from gatewayd.workers import Offload

# How often a stopping process group is checked for stragglers during its grace period.
_GROUP_CHECK_S = 0.05


def command_argv(payload: ExecPayload) -> list[str]:
    """The argv of an exec payload: the command split with shlex, or the shell script."""
    if payload.shell is not None:
        return ["/bin/sh", "-c", payload.shell]
    assert payload.command is not None
    return shlex.split(payload.command)


def result_of_status(code: int, tail: str | None, ended_at: datetime | None = None) -> ExecResult:
    """What a run's status says: success, an exit code, or a signal."""
    sig = signal_of_status(code)
    if sig is not None:
        name = signal.Signals(sig).name
        return ExecResult(
            exit_code=code if code >= 0 else None,
            signal=sig,
            output_tail=tail,
            error=f"killed by signal {name}",
            ended_at=ended_at,
        )
    error = None if code == 0 else f"exited with code {code}"
    return ExecResult(exit_code=code, output_tail=tail, error=error, ended_at=ended_at)


class GroupExecution:
    """A run's process group, led by its waiter; base of started and adopted executions.

    ``ended_at`` of the result is the time the waiter wrote the status, when no
    daemon watched the run end; a watching daemon's own clock is better.
    """

    watched_from_start = True

    def __init__(
        self,
        *,
        pid: int,
        pid_start: int | None,
        log_path: Path,
        exit_path: Path,
        tail_bytes: int,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        self._pid = pid
        self._pid_start = pid_start
        self._log_path = log_path
        self._exit_path = exit_path
        self._tail_bytes = tail_bytes
        self._offload = offload
        self._result: ExecResult | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def pid_start(self) -> int | None:
        return self._pid_start

    async def _leader_exit_code(self) -> int | None:
        """Wait for the waiter to end; its status if we can know it as its parent."""
        raise NotImplementedError

    async def wait(self) -> ExecResult:
        if self._result is None:
            code = await self._leader_exit_code()
            written, tail = await self._offload(
                partial(_left_behind, self._exit_path, self._log_path, self._tail_bytes)
            )
            if written is not None and (code is None or code >= 0):
                ended_at = None if self.watched_from_start else written[1]
                self._result = result_of_status(written[0], tail, ended_at)
            elif code is not None:
                self._result = result_of_status(code, tail)
            else:
                self._result = ExecResult(
                    output_tail=tail,
                    error="the run's process ended while no gatewayd watched it, "
                    "without recording an exit status (it was killed)",
                    lost=True,
                )
        return self._result

    async def stop(self, grace_s: float) -> None:
        pgid = self._pid
        if signal_group(pgid, signal.SIGTERM):
            with anyio.move_on_after(grace_s):
                await self._leader_exit_code()
                # No event tells when the last member of a group is gone: check, bounded.
                while await self._offload(partial(group_members, pgid)):  # noqa: ASYNC110
                    await anyio.sleep(_GROUP_CHECK_S)
            signal_group(pgid, signal.SIGKILL)
        await self._leader_exit_code()


class ProcessExecution(GroupExecution):
    """A waiter this daemon started: its own child."""

    def __init__(
        self,
        child: Child,
        ctx: RunContext,
        tail_bytes: int,
        pid_start: int | None,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        super().__init__(
            pid=child.pid,
            pid_start=pid_start,
            log_path=ctx.log_path,
            exit_path=ctx.exit_path,
            tail_bytes=tail_bytes,
            offload=offload,
        )
        self._child = child

    async def _leader_exit_code(self) -> int | None:
        return await self._child.wait()


class AdoptedExecution(GroupExecution):
    """A waiter started by an instance that is gone, re-adopted by this one."""

    watched_from_start = False

    async def _leader_exit_code(self) -> int | None:
        await wait_for_exit(self._pid, self._pid_start)
        return None

    async def stop(self, grace_s: float) -> None:
        # The pid may belong to another process by now: signal only the one we know.
        if is_running(self._pid, self._pid_start):
            await super().stop(grace_s)


class ExecRunner:
    """Starts exec payloads: argv or ``/bin/sh -c``, stdin from /dev/null, output to the log.

    Its blocking work (files, spawning) is done by ``offload``, off the event loop.
    """

    def __init__(
        self, *, tail_bytes: int = 4096, offload: Offload = anyio.to_thread.run_sync
    ) -> None:
        self._tail_bytes = tail_bytes
        self._offload = offload

    def adopt(
        self, *, pid: int, pid_start: int | None, log_path: Path, exit_path: Path
    ) -> AdoptedExecution:
        """An execution for the waiter of a run that a previous instance started."""
        return AdoptedExecution(
            pid=pid,
            pid_start=pid_start,
            log_path=log_path,
            exit_path=exit_path,
            tail_bytes=self._tail_bytes,
            offload=self._offload,
        )

    async def start(self, ctx: RunContext) -> ProcessExecution:
        payload = ctx.job.payload
        assert isinstance(payload, ExecPayload)
        return await spawn_under_waiter(
            ctx,
            command_argv(payload),
            cwd=payload.cwd,
            tail_bytes=self._tail_bytes,
            offload=self._offload,
        )


async def spawn_under_waiter(
    ctx: RunContext,
    argv: list[str],
    *,
    cwd: str | None,
    tail_bytes: int,
    stdin_path: Path | None = None,
    stdout_path: Path | None = None,
    offload: Offload = anyio.to_thread.run_sync,
) -> ProcessExecution:
    """Start ``argv`` under a waiter, in its own session; stderr (and stdout) to the log."""
    if not argv:
        raise SpawnFailed("the command is empty")
    # Shielded: a child once started must reach its caller, who stops it if cancelled.
    with anyio.CancelScope(shield=True):
        if PIDFD:
            process, pidfd, pid_start = await offload(
                partial(_spawn, ctx, argv, cwd, stdin_path, stdout_path)
            )
            child: Child = SpawnedChild(process, pidfd)
        else:
            child, pid_start = await _open(ctx, argv, cwd, stdin_path, stdout_path, offload)
    return ProcessExecution(child, ctx, tail_bytes, pid_start, offload)


async def _open(
    ctx: RunContext,
    argv: list[str],
    cwd: str | None,
    stdin_path: Path | None,
    stdout_path: Path | None,
    offload: Offload,
) -> tuple[Child, int | None]:
    """``_spawn`` where there are no pidfds: the child is started through anyio."""
    files = await offload(partial(_prepare, ctx, argv[0], cwd, stdin_path, stdout_path))
    with _launch(ctx, argv, cwd, files) as launch:
        child = await open_waiter(launch)
    return child, await offload(partial(process_start_time, child.pid))


def _spawn(
    ctx: RunContext,
    argv: list[str],
    cwd: str | None,
    stdin_path: Path | None,
    stdout_path: Path | None,
) -> tuple[subprocess.Popen[bytes], int | None, int | None]:
    """Open the run's files, start the waiter, and read its start time: it, pidfd, start.

    Blocking: for a worker thread.
    """
    files = _prepare(ctx, argv[0], cwd, stdin_path, stdout_path)
    with _launch(ctx, argv, cwd, files) as launch:
        process, pidfd = spawn_waiter(launch)
    return process, pidfd, process_start_time(process.pid)


@contextlib.contextmanager
def _launch(
    ctx: RunContext,
    argv: list[str],
    cwd: str | None,
    files: tuple[BinaryIO, BinaryIO | None, BinaryIO | None],
) -> Iterator[Launch]:
    """The waiter's launch, with the run's files: closed after (the child has its own).

    An OSError in the block (the waiter could not start) becomes SpawnFailed.
    """
    log, stdin, stdout = files
    try:
        yield Launch(
            argv=argv,
            exit_path=str(ctx.exit_path),
            cwd=cwd,
            env=ctx.env,
            stdin=stdin,
            stdout=stdout if stdout is not None else log,
            stderr=log,
        )
    except OSError as exc:
        raise SpawnFailed(
            f"cannot start {argv[0]!r}: {exc.strerror or exc}", data={"errno": exc.errno}
        ) from None
    finally:
        for handle in files:
            if handle is not None:
                handle.close()


def _left_behind(
    exit_path: Path, log_path: Path, tail_bytes: int
) -> tuple[tuple[int, datetime] | None, str | None]:
    """The exit status the waiter wrote (and when), and the tail of the run's log."""
    return read_exit_status(exit_path), read_tail(log_path, tail_bytes)


def _prepare(
    ctx: RunContext,
    program: str,
    cwd: str | None,
    stdin_path: Path | None,
    stdout_path: Path | None,
) -> tuple[BinaryIO, BinaryIO | None, BinaryIO | None]:
    """Check that the command can start, and open its files; SpawnFailed says why not."""
    if cwd is not None and not os.path.isdir(cwd):
        raise SpawnFailed(f"cannot start {program!r}: the directory {cwd} does not exist")
    search = ctx.env.get("PATH", os.defpath)
    if "/" in program:
        where = Path(cwd or ".", program) if not os.path.isabs(program) else Path(program)
        found = os.access(where, os.X_OK) and where.is_file()
    else:
        found = shutil.which(program, path=search) is not None
    if not found:
        raise SpawnFailed(f"cannot start {program!r}: not found or not executable")
    opened: list[BinaryIO] = []
    try:
        ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
        opened.append(ctx.log_path.open("ab"))
        if stdin_path is not None:
            opened.append(stdin_path.open("rb"))
        if stdout_path is not None:
            opened.append(stdout_path.open("wb"))
    except OSError as exc:
        for handle in opened:
            handle.close()
        raise SpawnFailed(
            f"cannot open the run's files in {ctx.log_path.parent}: {exc.strerror or exc}"
        ) from None
    log = opened.pop(0)
    stdin = opened.pop(0) if stdin_path is not None else None
    stdout = opened.pop(0) if stdout_path is not None else None
    return log, stdin, stdout
