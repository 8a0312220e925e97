"""Processes and process groups: identity, exit watching, signalling, output tails.

A run's process is identified by its pid together with its start time, so that a
pid reused by an unrelated process is never taken for the run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import anyio

_PROC = Path("/proc")
_LINUX = sys.platform.startswith("linux")
# Where processes cannot be watched through a pidfd, how often they are checked.
_POLL_EXIT_S = 1.0


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """When a running process started (clock ticks since boot), or ``None`` if none runs.

    A zombie counts as ended. Outside Linux the start time cannot be read, and a
    live process answers ``0``.
    """
    if not _LINUX:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_running(pid: int, start_time: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start_time`` still runs."""
    started = process_start_time(pid)
    if started is None:
        return False
    return start_time is None or started in (start_time, 0)


async def wait_for_exit(pid: int, start_time: int | None) -> None:
    """Return once the identified process has ended; it need not be our child."""
    fd = None
    with contextlib.suppress(AttributeError, OSError):
        fd = os.pidfd_open(pid)
    try:
        if fd is not None:
            # The pid may have been reused before the pidfd was opened: check again.
            if is_running(pid, start_time):
                await anyio.wait_readable(fd)
            return
        # Without pidfds (before Linux 5.3, or elsewhere) no event says that a
        # process that is not our child has ended: look, at a bounded rate.
        while is_running(pid, start_time):  # noqa: ASYNC110
            await anyio.sleep(_POLL_EXIT_S)
    finally:
        if fd is not None:
            os.close(fd)


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to every process of the group; ``False`` if the group is empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_exists(pgid: int) -> bool:
    """Whether any process (a zombie included) is left in the group: one system call."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owns_group(pgid: int, leader_start: int | None) -> bool:
    """Whether the group ``pgid`` is still the one its leader (started at ``leader_start``) made.

    While the leader runs, its start time says so. Once it is gone, the group's
    id cannot be taken by a new group while any member of the old one is left,
    so a group found with no process at ``pgid`` is the leader's.
    """
    started = process_start_time(pgid)
    if started is None:
        return group_exists(pgid)
    return leader_start is None or started in (leader_start, 0)


def process_group_of(pid: int) -> int | None:
    """The process group of a running process, or ``None`` if none runs (Linux only)."""
    if not _LINUX:
        return None
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 3 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[2])


def parent_of(pid: int) -> int | None:
    """The parent of a running process, or ``None`` if none runs (Linux only)."""
    fields = _stat_fields(pid) if _LINUX else None
    if fields is None or len(fields) < 2:
        return None
    return int(fields[1])


def command_of(pid: int, *, limit: int = 200) -> str:
    """A process's command line, for a report ("?" if it cannot be read)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def group_members(pgid: int) -> list[int]:
    """Pids of the group's processes that still run (zombies excluded).

    On Linux this reads ``/proc``; elsewhere it can only tell whether a signal
    would reach the group, and answers ``[pgid]`` or ``[]``.
    """
    if not _LINUX:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def signal_of_status(code: int) -> int | None:
    """The signal that ended a process, from its status as a parent or a shell sees it.

    A negative code is a signal seen by the parent; 129 to 192 is how a shell
    reports a child killed by signal ``code - 128``.
    """
    if code < 0:
        return -code
    if 128 < code <= 128 + 64:
        with contextlib.suppress(ValueError):
            return int(signal.Signals(code - 128))
    return None


def read_tail(path: Path, limit: int) -> str | None:
    """The last ``limit`` bytes of a file as text, cut at a character boundary."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except FileNotFoundError:
        return None
    if not data:
        return ""
    if len(data) == limit:
        # Drop UTF-8 continuation bytes of a character cut by the limit.
        start = 0
        while start < min(4, len(data)) and (data[start] & 0xC0) == 0x80:
            start += 1
        data = data[start:]
    return data.decode("utf-8", errors="replace")
