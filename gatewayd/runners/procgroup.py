"""Process groups: signalling them and telling whether anything of them is left."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

_PROC = Path("/proc")


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to every process of the group; ``False`` if the group is empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the group's processes that still run (zombies excluded).

    On Linux this reads ``/proc``; elsewhere it can only tell whether a signal
    would reach the group, and answers ``[pgid]`` or ``[]``.
    """
    if not sys.platform.startswith("linux"):
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
        try:
            raw = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


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
