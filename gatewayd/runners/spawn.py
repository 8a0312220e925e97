"""Starting a run's waiter process, cheaply, in a session of its own.

On Linux the waiter is started from a worker thread by ``subprocess`` (a vfork,
during which the interpreter lets other threads run: its cost does not grow with
the daemon's memory, and ``posix_spawn`` would hold every thread until the
exec) and reaped through a pidfd, without a child watcher. Elsewhere anyio's
``open_process`` does the same job.

The waiter is ``/bin/sh -c WAITER_SCRIPT <exit file> <cwd> <umask> <nofile>
<max output> <stdin file> <stdout file> <pump> COMMAND ARGS...``. It opens the
command's stdin and stdout if files are named (``/dev/null`` and the log
otherwise), restores the umask and descriptor limit the daemon was started
with, enters ``cwd`` (if not empty), runs the command, writes the command's exit
status into the exit file and exits with it. It catches SIGTERM, which its child
does not inherit, so a group stopped with SIGTERM still records a status.

With a ``max output`` above 0, the command's output goes through a pipe to a
*pump* in the run's group, which appends at most that many bytes to the log,
reads and counts the rest, and ends with a line saying how many bytes were
dropped: the command is never killed for its output. The pump is a perl
one-liner (perl is part of every Debian and macOS); where there is no perl, a
``head``-based one does the same, with the log lagging by up to a block while
the run goes on, and the count a lower bound (a shell read skips NUL bytes).
The pump ignores SIGTERM, so that a stopped run's last output still reaches the
log; it ends when every writer of the pipe has gone. The perl pump moves to a
process group of its own, so that it never counts among the run's processes;
the ``head`` one stays in the run's group, and the daemon tells it apart by pid.

The waiter is started with the pipe's read end as stdin, the log as stdout and
the pipe's write end as stderr: the pump takes the first two (by way of fd 3: a
background job's stdin is /dev/null), and the waiter then keeps only the write
end for the command. It writes the pump's pid after the exit status (``<status>
<pump pid>``), so that the daemon can tell the pump from processes left behind.
With 0, the output goes straight to the log.

The exit file is made by the daemon with room for the status already in it, and
the waiter writes over that room without truncating (``1<>``): a full disk
cannot keep the status from being written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import anyio
import anyio.abc

# The pump, in perl: exact byte counts, each read written at once, and reading
# on after a failed write (a full disk), so that the command is never blocked.
# It leaves the run's process group for one of its own, so that the group is
# empty as soon as the command's processes are gone, whenever the pump is reaped.
PERL_PUMP = (
    "setpgrp(0, 0); $m = shift; $n = 0; "
    "while (($r = sysread STDIN, $b, 65536) > 0) { "
    "if ($n < $m) { $k = $m - $n; $k = $r if $r < $k; $o = 0; "
    "while ($o < $k) { $w = syswrite STDOUT, $b, $k - $o, $o; last unless defined $w; "
    "$o += $w } } $n += $r } "
    'printf "\\n[gatewayd: max_output of %d bytes reached; %d more bytes of output '
    'were dropped]\\n", $m, $n - $m if $n > $m'
)
# Where there is no perl: head copies the first bytes (buffered by its stdio, so
# the log may lag by a block until it ends), and a shell read counts the rest.
_HEAD_PUMP = (
    'head -c "$4"; '
    "if IFS= read -r l; then n=$(exec wc -c); n=$((n + ${#l} + 1)); "
    "else n=${#l}; fi; "
    '[ "$n" -eq 0 ] || printf \'\\n[gatewayd: max_output of %s bytes reached; '
    'at least %s more bytes of output were dropped]\\n\' "$4" "$n"'
)
WAITER_SCRIPT = (
    "trap : TERM; p=0; "
    'fail() { printf \'%s %s\\n\' "$1" "$p" 1<>"$0"; exit "$1"; }; '
    'if [ "$4" -gt 0 ]; then '
    "exec 3<&0; { trap '' TERM; exec 0<&3 3<&- 2>/dev/null; "
    'if [ -n "$7" ]; then exec perl -e "$7" "$4"; fi; '
    f"{_HEAD_PUMP}; }} & "
    "p=$!; exec 3<&- 0</dev/null 1>&2; fi; "
    'if [ -n "$5" ]; then command exec 0<"$5" || fail 126; fi; '
    'if [ -n "$6" ]; then command exec 1>"$6" || fail 126; fi; '
    'umask "$2"; [ -z "$3" ] || ulimit -n "$3" 2>/dev/null; '
    'if [ -n "$1" ]; then cd -- "$1" || fail 126; fi; '
    'shift 7; "$@"; rc=$?; printf \'%s %s\\n\' "$rc" "$p" 1<>"$0"; exit "$rc"'
)
HAS_PERL = shutil.which("perl") is not None
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    """A waiter to start: the command, its exit file, directory, environment and files.

    ``log`` takes the output. With ``pipe`` (its read and write ends) and
    ``max_output`` above 0, the output goes through the pump instead. The
    command's stdin is ``stdin_path`` (``/dev/null`` if ``None``), and its stdout
    ``stdout_path`` if given (an agent's reply), else the output.
    """

    argv: Sequence[str]
    exit_path: str
    cwd: str | None
    env: Mapping[str, str]
    log: IO[bytes]
    umask: int
    nofile: int | None
    max_output: int = 0
    pipe: tuple[int, int] | None = None
    stdin_path: str | None = None
    stdout_path: str | None = None
    perl_pump: bool = HAS_PERL

    def waiter_argv(self) -> list[str]:
        return [
            "/bin/sh",
            "-c",
            WAITER_SCRIPT,
            self.exit_path,
            self.cwd or "",
            f"{self.umask:04o}",
            "" if self.nofile is None else str(self.nofile),
            str(self.max_output if self.pipe is not None else 0),
            self.stdin_path or "",
            self.stdout_path or "",
            PERL_PUMP if self.perl_pump else "",
            *self.argv,
        ]

    def options(self) -> dict[str, Any]:
        """What ``subprocess.Popen`` and ``anyio.open_process`` are both given."""
        files: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": self.log,
            "stderr": self.log,
        }
        if self.pipe is not None and self.max_output > 0:
            files = {"stdin": self.pipe[0], "stdout": self.log, "stderr": self.pipe[1]}
        return {**files, "env": dict(self.env), "start_new_session": True}


def spawn_waiter(launch: Launch) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the waiter as the leader of a new session: it, and its pidfd.

    Blocking (a vfork, during which other threads run: it returns once the child
    has exec'd the shell): call it from a worker thread, and watch the child with
    a ``SpawnedChild`` on the loop. Only where ``PIDFD`` holds; elsewhere see
    ``open_waiter``. Raises OSError.
    """
    # The child gets SIGPIPE and SIGXFSZ back at their defaults (restore_signals);
    # the signals the daemon handles are reset to theirs by the exec itself.
    process = subprocess.Popen(launch.waiter_argv(), **launch.options())
    pidfd = None
    with contextlib.suppress(OSError):
        pidfd = os.pidfd_open(process.pid)
    return process, pidfd


async def open_waiter(launch: Launch) -> Child:
    """``spawn_waiter`` where there are no pidfds: anyio watches the child."""
    process = await anyio.open_process(launch.waiter_argv(), **launch.options())
    return AnyioChild(process)
