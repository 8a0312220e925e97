"""Starting a run's waiter process, cheaply, in a session of its own.

On Linux the waiter is started with ``posix_spawn`` (a vfork: its cost does not
grow with the daemon's memory, and the event loop waits only until the exec)
and reaped through a pidfd, without a child watcher. Elsewhere anyio's
``open_process`` does the same job.

The waiter is ``/bin/sh -c WAITER_SCRIPT <exit file> <cwd> COMMAND ARGS...``: it
enters ``cwd`` (if not empty), runs the command, writes the command's exit
status into the exit file and exits with it. It catches SIGTERM, which its
child does not inherit, so a group stopped with SIGTERM still records a status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Protocol

import anyio
import anyio.abc

WAITER_SCRIPT = (
    'trap : TERM; if [ -n "$1" ]; then cd -- "$1" || exit 126; fi; shift; '
    '"$@"; rc=$?; echo "$rc" > "$0"; exit "$rc"'
)
# Restored to their defaults in the child (Python ignores SIGPIPE and SIGXFSZ).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PIDFD = sys.platform.startswith("linux") and hasattr(os, "pidfd_open")
_POLL_S = 0.05


class Child(Protocol):
    """A started waiter: its pid, and its exit code once it has ended."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> int: ...


class SpawnedChild:
    """A child started with posix_spawn, reaped through a pidfd when it ends."""

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self._pid = pid
        self._pidfd = pidfd
        self._code: int | None = None
        self._ended = anyio.Event()
        self._waiting = False

    @property
    def pid(self) -> int:
        return self._pid

    async def wait(self) -> int:
        if self._code is None and self._waiting:
            await self._ended.wait()
        if self._code is None:
            self._waiting = True
            try:
                self._code = await self._reap()
                self._ended.set()
            finally:
                self._waiting = False
        assert self._code is not None
        return self._code

    async def _reap(self) -> int:
        if self._pidfd is not None:
            await anyio.wait_readable(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
            # The pidfd said the child ended: reaping it does not block.
            _, status = os.waitpid(self._pid, os.WNOHANG)  # noqa: ASYNC222
            return os.waitstatus_to_exitcode(status)
        # No pidfd (an old kernel): look at a bounded rate.
        while True:
            pid, status = os.waitpid(self._pid, os.WNOHANG)  # noqa: ASYNC222
            if pid:
                return os.waitstatus_to_exitcode(status)
            await anyio.sleep(_POLL_S)


class AnyioChild:
    def __init__(self, process: anyio.abc.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        return await self._process.wait()


def waiter_argv(exit_path: str, cwd: str | None, argv: Sequence[str]) -> list[str]:
    return ["/bin/sh", "-c", WAITER_SCRIPT, exit_path, cwd or "", *argv]


async def spawn_waiter(
    argv: Sequence[str],
    *,
    exit_path: str,
    cwd: str | None,
    env: Mapping[str, str],
    stdin: IO[bytes] | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
) -> Child:
    """Start the waiter for ``argv`` as the leader of a new session; raises OSError."""
    full = waiter_argv(exit_path, cwd, argv)
    if _PIDFD:
        stdin_fd = stdin.fileno() if stdin is not None else os.open(os.devnull, os.O_RDONLY)
        try:
            # A vfork: the loop waits only until the child has exec'd the shell.
            pid = os.posix_spawn(  # noqa: ASYNC221
                full[0],
                full,
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                    (os.POSIX_SPAWN_DUP2, stdout.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
                ],
                setsid=True,
                setsigmask=(),
                setsigdef=_DEFAULT_SIGNALS,
            )
        finally:
            if stdin is None:
                os.close(stdin_fd)
        pidfd = None
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(pid)
        return SpawnedChild(pid, pidfd)
    process = await anyio.open_process(
        full,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=dict(env),
        start_new_session=True,
    )
    return AnyioChild(process)
