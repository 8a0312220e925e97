"""A lock on a file (``flock``), for the instances that share an embedded store's host.

The wait runs on a worker thread. A waiter that gives up (its wait timed out,
or it was cancelled) leaves the thread behind; the thread lets go of the lock
the moment it gets it, so that a lock nobody holds is never held.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread

from gatewayd.errors import LockBusy


class _Grant:
    """One waiter's claim on the lock's file: taken by its thread, let go once."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._guard = threading.Lock()
        self._taken = False
        self._given_up = False

    def take(self) -> None:
        """On a worker thread: wait for the lock."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        with self._guard:
            self._taken = True
            if self._given_up:
                self._let_go()

    def give_up(self) -> None:
        """The waiter stopped waiting: let go now if taken, else once taken."""
        with self._guard:
            self._given_up = True
            if self._taken:
                self._let_go()

    def release(self) -> None:
        with self._guard:
            self._let_go()

    def _let_go(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file releases its flock
            self._fd = -1


@asynccontextmanager
async def file_lock(path: Path, *, wait_s: float) -> AsyncIterator[None]:
    """Hold the ``flock`` of ``path`` (created if missing) while the context lasts."""
    grant = _Grant(path)
    try:
        with anyio.fail_after(wait_s):
            await anyio.to_thread.run_sync(grant.take, abandon_on_cancel=True)
    except TimeoutError:
        grant.give_up()
        raise LockBusy.waited(str(path), wait_s) from None
    except BaseException:
        grant.give_up()
        raise
    try:
        yield
    finally:
        grant.release()
