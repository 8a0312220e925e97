"""The state directory: one daemon's alone, by an exclusive lock and private modes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import structlog

from gatewayd.errors import StateDirLocked
from gatewayd.paths import LOCK_NAME
from gatewayd.store.faults import as_store_error

log = structlog.get_logger("gatewayd.statelock")

# The daemon's umask: every file it makes is 0600 and every directory 0700.
PRIVATE_UMASK = 0o077
# What gatewayd keeps in the state directory, made private at start if an older
# version (or a user) left it open to others.
PRIVATE_DIRS = ("runs", "sessions")


def warn_if_open_to_others(state_dir: Path) -> None:
    """Warn, naming the mode, if others may enter the state directory; close what is ours."""
    try:
        mode = stat.S_IMODE(state_dir.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "the state directory is open to other users; gatewayd keeps its own files "
            "private, but consider chmod 700",
            state_dir=str(state_dir),
            mode=f"{mode:04o}",
        )
    for name in PRIVATE_DIRS:
        with contextlib.suppress(OSError):
            inner = state_dir / name
            if stat.S_IMODE(inner.stat().st_mode) & 0o077:
                inner.chmod(0o700)


@contextlib.contextmanager
def hold_state_dir(state_dir: Path) -> Iterator[Path]:
    """Hold ``<state_dir>/gatewayd.lock`` for the life of the context.

    Raises :class:`StateDirLocked` at once, naming the holder's pid, if another
    process holds it. The lock file descriptor is not inherited by children, so
    a run that outlives the daemon never keeps the lock.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise as_store_error(exc, state_dir, "creating the state directory") from None
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise as_store_error(exc, path, "opening the lock file") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StateDirLocked(
                f"another gatewayd (pid {holder}) is already serving {state_dir}; "
                "stop it first, or use another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
