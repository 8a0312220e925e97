"""The ``exec`` runner: a command in its own process group, under a waiter that outlives us.

Each command runs under a small ``/bin/sh`` waiter (see
:mod:`gatewayd.runners.spawn`), the leader of a new session and process group:
it runs the command, then writes its exit status into the run's ``.exit`` file
and exits with it. Output goes to the run's log file, capped at ``max_output``
by a pump in the run's own group, so that neither the output nor the exit
status depends on the daemon staying alive.

When the waiter has ended, the run's group is settled before the run is
recorded ended (I9): processes left in it (``sleep 100 &``) are stopped, or kept
if the job's ``leftovers`` policy says so, and reported either way. A waiter
that died without writing a status (killed) leaves its command running: the
whole group is stopped, and the run is ``lost``.

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
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

import anyio
import anyio.abc
import anyio.to_thread

from gatewayd.errors import SpawnFailed
from gatewayd.model import ExecPayload, LeftoverPolicy, LeftoverProcess, Leftovers
from gatewayd.runfiles import ExitRecord, read_exit_status, reserve_exit_file
from gatewayd.runners.base import ExecResult, RunContext
from gatewayd.runners.processes import (
    command_of,
    group_exists,
    group_members,
    owns_group,
    parent_of,
    process_group_of,
    process_start_time,
    read_tail,
    signal_group,
    signal_of_status,
    wait_for_exit,
)
from gatewayd.runners.spawn import (
    HAS_PERL,
    PIDFD,
    Child,
    Launch,
    SpawnedChild,
    open_waiter,
    spawn_waiter,
)
from gatewayd.settings import GATEWAY, TAIL_BYTES
from gatewayd.workers import Offload

# How often a stopping process group is checked for stragglers during its grace period.
_GROUP_CHECK_S = 0.05
# How long the output pump may take to drain once the run's group is empty. (A
# process that left the group and still holds the pipe keeps it going: then the
# tail is read without waiting longer.)
_PUMP_DRAIN_S = 0.2
# The most leftover processes a run's record names.
MAX_LEFTOVERS_NAMED = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class WaiterSettings:
    """How runs' waiters are started and their groups settled; the same for every run.

    ``umask`` and ``nofile`` are what the daemon itself was started with: runs
    get them back (the daemon's own umask is private). ``perl_pump``: the output
    pump is perl's where perl is found, else ``head``'s (see spawn).
    """

    tail_bytes: int = TAIL_BYTES
    kill_grace_s: float = GATEWAY.kill_grace_s
    max_output: int = GATEWAY.max_output
    umask: int = 0o022
    nofile: int | None = None
    perl_pump: bool = HAS_PERL


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


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return "a signal"
    with contextlib.suppress(ValueError):
        return signal.Signals(-code).name
    return f"signal {-code}"


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
        settings: WaiterSettings,
        leftovers: LeftoverPolicy = LeftoverPolicy.KILL,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        self._pid = pid
        self._pid_start = pid_start
        self._log_path = log_path
        self._exit_path = exit_path
        self._settings = settings
        self._policy = leftovers
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
            written = await self._offload(partial(read_exit_status, self._exit_path))
            if written is None and (code is None or code < 0):
                self._result = await self._waiter_lost(code)
            else:
                self._result = await self._ended(code, written)
        return self._result

    async def _ended(self, code: int | None, written: ExitRecord | None) -> ExecResult:
        """The command ended and its status is known: settle the group, then read the tail."""
        leftovers = await self._settle_group(None if written is None else written.pump_pid)
        tail = await self._tail()
        if written is not None:
            ended_at = None if self.watched_from_start else written.written_at
            result = result_of_status(written.status, tail, ended_at)
        else:
            assert code is not None
            result = result_of_status(code, tail)  # the status could not be written
        return replace(result, leftovers=leftovers)

    async def _waiter_lost(self, code: int | None) -> ExecResult:
        """The waiter ended without writing a status: its command may still run. Stop it."""
        if code is None:
            how = "ended without recording an exit status (it was killed)"
        else:
            how = f"was killed by {_signal_name(code)} before its command ended"
        error = f"the run's waiter (pid {self._pid}) {how}"
        if await self._offload(partial(owns_group, self._pid, self._pid_start)):
            await self._stop_group(self._settings.kill_grace_s)
            error += "; the rest of its process group was stopped"
        return ExecResult(output_tail=await self._tail(), error=error, lost=True)

    async def _tail(self) -> str | None:
        return await self._offload(partial(read_tail, self._log_path, self._settings.tail_bytes))

    async def _settle_group(self, pump: int | None) -> Leftovers | None:
        """Stop (or keep) what is left of the run's group once its command has ended,
        then let the output pump drain (bounded), so that the log's tail is complete."""
        left, pump_runs = await self._offload(partial(_look, self._pid, pump))
        leftovers = None
        if left:
            processes = await self._offload(partial(_describe, left[:MAX_LEFTOVERS_NAMED]))
            leftovers = Leftovers(policy=self._policy, processes=processes)
            if self._policy is LeftoverPolicy.KILL:
                await self._stop_group(self._settings.kill_grace_s, spare=pump)
        if pump is not None and pump_runs:
            with anyio.move_on_after(_PUMP_DRAIN_S):
                await wait_for_exit(pump, None)
        return leftovers

    async def _stop_group(self, grace_s: float, *, spare: int | None = None) -> None:
        """SIGTERM to the group, SIGKILL after ``grace_s`` to what is left.

        The pump ignores SIGTERM; once the others are gone it drains and ends, and
        the group is left empty.
        """
        pgid = self._pid
        if not signal_group(pgid, signal.SIGTERM):
            return
        with anyio.move_on_after(grace_s):
            # No event tells when the last member of a group is gone: check, bounded.
            while await self._offload(partial(_others, pgid, spare)):  # noqa: ASYNC110
                await anyio.sleep(_GROUP_CHECK_S)
            return
        if await self._offload(partial(_others, pgid, spare)):
            signal_group(pgid, signal.SIGKILL)

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


def _look(pgid: int, pump: int | None) -> tuple[list[int], bool]:
    """What is left in the group besides the pump, and whether the pump still runs.

    One system call when the group is empty (the usual case); a scan of the
    processes only when something is left in it.
    """
    left = _others(pgid, pump) if group_exists(pgid) else []
    pump_runs = pump is not None and process_group_of(pump) in (pgid, pump)
    return left, pump_runs


def _others(pgid: int, pump: int | None) -> list[int]:
    """The group's live processes, but the pump and the pump's own children (``head``)."""
    members = group_members(pgid)
    if pump is None:
        return members
    return [m for m in members if m != pump and parent_of(m) != pump]


def _describe(pids: list[int]) -> tuple[LeftoverProcess, ...]:
    return tuple(LeftoverProcess(pid=pid, command=command_of(pid)) for pid in pids)


class ProcessExecution(GroupExecution):
    """A waiter this daemon started: its own child."""

    def __init__(
        self,
        child: Child,
        ctx: RunContext,
        settings: WaiterSettings,
        pid_start: int | None,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        super().__init__(
            pid=child.pid,
            pid_start=pid_start,
            log_path=ctx.log_path,
            exit_path=ctx.exit_path,
            settings=settings,
            leftovers=ctx.job.leftovers,
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
        # The pid may belong to another process by now: signal only the group we know.
        if owns_group(self._pid, self._pid_start):
            await super().stop(grace_s)


class ExecRunner:
    """Starts exec payloads: argv or ``/bin/sh -c``, stdin from /dev/null, output to the log.

    Its blocking work (files, spawning) is done by ``offload``, off the event loop.
    """

    def __init__(
        self,
        *,
        settings: WaiterSettings | None = None,
        offload: Offload = anyio.to_thread.run_sync,
    ) -> None:
        self.settings = settings or WaiterSettings()
        self._offload = offload

    def adopt(
        self,
        *,
        pid: int,
        pid_start: int | None,
        log_path: Path,
        exit_path: Path,
        leftovers: LeftoverPolicy = LeftoverPolicy.KILL,
    ) -> AdoptedExecution:
        """An execution for the waiter of a run that a previous instance started."""
        return AdoptedExecution(
            pid=pid,
            pid_start=pid_start,
            log_path=log_path,
            exit_path=exit_path,
            settings=self.settings,
            leftovers=leftovers,
            offload=self._offload,
        )

    async def start(self, ctx: RunContext) -> ProcessExecution:
        payload = ctx.job.payload
        assert isinstance(payload, ExecPayload)
        return await spawn_under_waiter(
            ctx,
            command_argv(payload),
            cwd=payload.cwd,
            settings=self.settings,
            offload=self._offload,
        )


async def spawn_under_waiter(
    ctx: RunContext,
    argv: list[str],
    *,
    cwd: str | None,
    settings: WaiterSettings,
    stdin_path: Path | None = None,
    stdout_path: Path | None = None,
    offload: Offload = anyio.to_thread.run_sync,
) -> ProcessExecution:
    """Start ``argv`` under a waiter, in its own session; stderr (and stdout) to the log."""
    if not argv:
        raise SpawnFailed("the command is empty")
    request = _Request(
        ctx=ctx,
        argv=argv,
        cwd=cwd,
        settings=settings,
        stdin_path=stdin_path,
        stdout_path=stdout_path,
    )
    # Shielded: a child once started must reach its caller, who stops it if cancelled.
    with anyio.CancelScope(shield=True):
        if PIDFD:
            process, pidfd, pid_start = await offload(partial(_spawn, request))
            child: Child = SpawnedChild(process, pidfd)
        else:
            child, pid_start = await _open(request, offload)
    return ProcessExecution(child, ctx, settings, pid_start, offload)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    """A waiter to start, before its files are opened."""

    ctx: RunContext
    argv: list[str]
    cwd: str | None
    settings: WaiterSettings
    stdin_path: Path | None
    stdout_path: Path | None

    @property
    def max_output(self) -> int:
        job = self.ctx.job.max_output
        return self.settings.max_output if job is None else job


@dataclass(slots=True, kw_only=True)
class _Files:
    """A run's open files: its log, and the pump's pipe (the waiter opens the others)."""

    log: BinaryIO
    pipe: tuple[int, int] | None = None

    def close(self) -> None:
        self.log.close()
        for fd in self.pipe or ():
            os.close(fd)


async def _open(request: _Request, offload: Offload) -> tuple[Child, int | None]:
    """``_spawn`` where there are no pidfds: the child is started through anyio."""
    files = await offload(partial(_prepare, request))
    with _launch(request, files) as launch:
        child = await open_waiter(launch)
    return child, await offload(partial(process_start_time, child.pid))


def _spawn(request: _Request) -> tuple[subprocess.Popen[bytes], int | None, int | None]:
    """Open the run's files, start the waiter, and read its start time: it, pidfd, start.

    Blocking: for a worker thread.
    """
    files = _prepare(request)
    with _launch(request, files) as launch:
        process, pidfd = spawn_waiter(launch)
    return process, pidfd, process_start_time(process.pid)


@contextlib.contextmanager
def _launch(request: _Request, files: _Files) -> Iterator[Launch]:
    """The waiter's launch, with the run's files: closed after (the child has its own).

    An OSError in the block (the waiter could not start) becomes SpawnFailed.
    """
    try:
        yield Launch(
            argv=request.argv,
            exit_path=str(request.ctx.exit_path),
            cwd=request.cwd,
            env=request.ctx.env,
            log=files.log,
            umask=request.settings.umask,
            nofile=request.settings.nofile,
            max_output=request.max_output,
            pipe=files.pipe,
            stdin_path=None if request.stdin_path is None else str(request.stdin_path),
            stdout_path=None if request.stdout_path is None else str(request.stdout_path),
            perl_pump=request.settings.perl_pump,
        )
    except OSError as exc:
        raise SpawnFailed(
            f"cannot start {request.argv[0]!r}: {exc.strerror or exc}", data={"errno": exc.errno}
        ) from None
    finally:
        files.close()


def _prepare(request: _Request) -> _Files:
    """Check that the command can start, and open its files; SpawnFailed says why not.

    The exit file is made here, with room for the status, before anything runs.
    """
    ctx, program, cwd = request.ctx, request.argv[0], request.cwd
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
    files: _Files | None = None
    try:
        ctx.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        reserve_exit_file(ctx.exit_path)
        files = _Files(log=_open_private(ctx.log_path, os.O_WRONLY | os.O_APPEND, "ab"))
        if request.max_output > 0:
            files.pipe = os.pipe()
    except OSError as exc:
        if files is not None:
            files.close()
        raise SpawnFailed(
            f"cannot open the run's files in {ctx.log_path.parent}: {exc.strerror or exc}",
            data={"errno": exc.errno},
        ) from None
    return files


def _open_private(path: Path, flags: int, mode: str) -> BinaryIO:
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return cast(BinaryIO, os.fdopen(fd, mode))
