"""Starting a run's waiter process, cheaply, in a session of its own.

On Linux the waiter is started from a worker thread by ``subprocess`` (a vfork,
during which the interpreter lets other threads run: its cost does not grow with
the daemon's memory, and ``posix_spawn`` would hold every thread until the
exec) and reaped through a pidfd, without a child watcher. Elsewhere anyio's
``open_process`` does the same job.

The waiter is ``/bin/sh -c WAITER_SCRIPT <exit file> <cwd> COMMAND ARGS...``: it
enters ``cwd`` (if not empty), runs the command, writes the command's exit
status into the exit file and exits with it. It catches SIGTERM, which its
child does not inherit, so a group stopped with SIGTERM still records a status.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import anyio
import anyio.abc

WAITER_SCRIPT = (
    'trap : TERM; if [ -n "$1" ]; then cd -- "$1" || exit 126; fi; shift; '
    '"$@"; rc=$?; echo "$rc" > "$0"; exit "$rc"'
)
PIDFD = sys.platform.startswith("linux") and hasattr(os, "pidfd_open")
_POLL_S = 0.05


class Child(Protocol):
    """A started waiter: its pid, and its exit code once it has ended."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> int: ...


class SpawnedChild:
    """A started waiter, reaped when its pidfd says it has ended."""

    def __init__(self, process: subprocess.Popen[bytes], pidfd: int | None) -> None:
        self._process = process
        self._pidfd = pidfd
        self._code: int | None = None
        self._ended = anyio.Event()
        self._waiting = False

    @property
    def pid(self) -> int:
        return self._process.pid

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
        # Once the pidfd has said the child ended, polling reaps it without blocking.
        while (code := self._process.poll()) is None:  # noqa: ASYNC110
            await anyio.sleep(_POLL_S)  # no pidfd (an old kernel): look at a bounded rate
        return code


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    """A waiter to start: the command, its exit file, directory, environment and files.

    ``stdin`` ``None`` is ``/dev/null``.
    """

    argv: Sequence[str]
    exit_path: str
    cwd: str | None
    env: Mapping[str, str]
    stdin: IO[bytes] | None
    stdout: IO[bytes]
    stderr: IO[bytes]

    def options(self) -> dict[str, Any]:
        """What ``subprocess.Popen`` and ``anyio.open_process`` are both given."""
        return {
            "stdin": self.stdin if self.stdin is not None else subprocess.DEVNULL,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "env": dict(self.env),
            "start_new_session": True,
        }


def spawn_waiter(launch: Launch) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the waiter as the leader of a new session: it, and its pidfd.

    Blocking (a vfork, during which other threads run: it returns once the child
    has exec'd the shell): call it from a worker thread, and watch the child with
    a ``SpawnedChild`` on the loop. Only where ``PIDFD`` holds; elsewhere see
    ``open_waiter``. Raises OSError.
    """
    # The child gets SIGPIPE and SIGXFSZ back at their defaults (restore_signals);
    # the signals the daemon handles are reset to theirs by the exec itself.
    process = subprocess.Popen(
        waiter_argv(launch.exit_path, launch.cwd, launch.argv), **launch.options()
    )
    pidfd = None
    with contextlib.suppress(OSError):
        pidfd = os.pidfd_open(process.pid)
    return process, pidfd


async def open_waiter(launch: Launch) -> Child:
    """``spawn_waiter`` where there are no pidfds: anyio watches the child."""
    process = await anyio.open_process(
        waiter_argv(launch.exit_path, launch.cwd, launch.argv), **launch.options()
    )
    return AnyioChild(process)
