"""The exclusive lock that makes a state directory belong to one daemon."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gatewayd.errors import StartupError, StateDirLocked
from gatewayd.paths import LOCK_NAME


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
        raise StartupError(
            f"cannot create the state directory {state_dir}: {exc.strerror or exc}"
        ) from None
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
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
