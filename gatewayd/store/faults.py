"""What a failed store operation means: a fault of the disk or the files, named.

SQLite's and the OS's errors are turned into the errors of
:mod:`gatewayd.errors`, each with the cause a user can act on: no space left,
a read-only file system, a permission, an I/O error, or a damaged file. Only a
file that fails SQLite's own check is called damaged; every other fault says
that the store is fine and what to do instead.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from gatewayd.errors import (
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    StorePermission,
    StoreReadOnly,
    StoreUnwritable,
)

# SQLite's primary result codes (the low byte of an extended code).
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_NOMEM = 7
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_PROTOCOL = 15
SQLITE_AUTH = 23
SQLITE_NOTADB = 26
_OUTAGES = frozenset(
    {
        SQLITE_PERM,
        SQLITE_BUSY,
        SQLITE_LOCKED,
        SQLITE_NOMEM,
        SQLITE_READONLY,
        SQLITE_IOERR,
        SQLITE_FULL,
        SQLITE_CANTOPEN,
        SQLITE_PROTOCOL,
        SQLITE_AUTH,
    }
)
_DAMAGE = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})
_NOT_DAMAGED = "the store itself is not damaged: keep it"


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the disk or the files rather than of one operation."""
    if isinstance(exc, sqlite3.Error):
        code = _primary(exc)
        return code in _OUTAGES or code in _DAMAGE
    return isinstance(exc, OSError)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _no_space(path: Path) -> bool:
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return stats.f_bavail == 0 or (stats.f_favail == 0 and stats.f_files > 0)


def _may_write(path: Path) -> bool:
    target = path if path.exists() else path.parent
    return os.access(target, os.R_OK | os.W_OK)


def full(path: Path, detail: str) -> StoreFull:
    return StoreFull(
        f"no space is left on the file system of {path} ({detail}); {_NOT_DAMAGED}. "
        "Free some space (a running gatewayd then writes what it holds by itself)",
        data={"path": str(path)},
    )


def fault_of(exc: BaseException, path: Path) -> StoreUnwritable | StoreCorrupt | None:
    """The fault ``exc`` shows in the store at ``path``, or ``None`` if it shows none."""
    if not is_outage(exc):
        return None
    detail = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    name = getattr(exc, "sqlite_errorname", None)
    if name and name not in detail:
        detail = f"{detail}, {name}"
    code = _primary(exc) if isinstance(exc, sqlite3.Error) else None
    number = exc.errno if isinstance(exc, OSError) else None
    directory = path.parent
    if code in _DAMAGE:
        return damaged(path, detail)
    if (
        code == SQLITE_FULL
        or number in (errno.ENOSPC, errno.EDQUOT)
        or (code in (SQLITE_IOERR, SQLITE_CANTOPEN, None) and _no_space(directory))
    ):
        return full(path, detail)
    if number == errno.EROFS or _read_only(directory):
        return StoreReadOnly(
            f"the file system of {path} is read-only ({detail}); {_NOT_DAMAGED}. "
            "Mount it read-write, or give gatewayd a state directory it can write",
            data={"path": str(path)},
        )
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreIOError(
            f"another program holds a lock on the store {path} ({detail}); {_NOT_DAMAGED}. "
            "Close what has it open (an sqlite3 shell, say): gatewayd retries by itself",
            data={"path": str(path)},
        )
    denied = number in (errno.EACCES, errno.EPERM)
    refused = code in (SQLITE_PERM, SQLITE_AUTH, SQLITE_READONLY, SQLITE_CANTOPEN)
    if denied or (refused and not _may_write(path)):
        return StorePermission(
            f"permission denied on {path} ({detail}); {_NOT_DAMAGED}. Run gatewayd as "
            "the user who owns the state directory, or give that user read and write "
            "access to it and its files",
            data={"path": str(path)},
        )
    return StoreIOError(
        f"the store {path} cannot be written: {detail}; check the device and its kernel log "
        "(dmesg). Run `gatewayd store check` to see whether the file is damaged",
        data={"path": str(path)},
    )


def damaged(path: Path, detail: str, *, maybe_foreign: bool = False) -> StoreCorrupt:
    """A damaged store's error: how to keep a copy and how to recover, in its message.

    ``maybe_foreign``: the file may be no store at all (it is not even SQLite).
    """
    what = "is damaged or is not a gatewayd store" if maybe_foreign else "is damaged"
    return StoreCorrupt(
        f"the store {path} {what} ({detail}); nothing was written to it. "
        f"Keep a copy first: cp -p {path} {path}-wal {path}-shm /a/safe/place/ (the last two "
        "may not exist). Then recover what can be read into a new file with "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` and move that into place, "
        f"or restore a backup made with `gatewayd store backup`",
        data={"path": str(path)},
    )


def as_store_error(exc: BaseException, path: Path, doing: str) -> StoreError:
    """``exc`` as the fault it shows, or as an error of the store naming what was being done."""
    fault = fault_of(exc, path)
    if fault is not None:
        return fault
    return StoreError(f"the store {path} failed while {doing}: {exc}", data={"path": str(path)})
