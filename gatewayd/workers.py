"""Threads that do blocking work for the event loop, handed over through a queue.

An operation is queued for a thread and its result comes back through the event
loop: cheaper than a general-purpose thread pool (no capacity limiter, no task
per call), and the loop never blocks. Each thread may hold a resource of its
own (a database connection), opened in the thread and closed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

import anyio.to_thread

T = TypeVar("T")
R = TypeVar("R")
Item = tuple[Callable[[Any], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class Offload(Protocol):
    """Runs a blocking function off the event loop: ``anyio.to_thread.run_sync`` is one."""

    async def __call__(self, func: Callable[[], T], /) -> T: ...


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Answer a caller on its loop (from ``call_soon_threadsafe``)."""
    if future.done():
        return  # the caller stopped waiting; the operation is done all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """Hand ``result`` (or ``error``) back to the caller waiting on ``loop``."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
        loop.call_soon_threadsafe(_settle, future, result, error)


async def hand_over(work: queue.SimpleQueue[Item | None], operation: Callable[[Any], T]) -> T:
    """Queue ``operation`` for a worker thread and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    work.put((operation, future, loop))
    return await future


class WorkerPool(Generic[R]):
    """``size`` threads, each with the resource ``open_resource()`` gives it, running operations.

    With one thread, operations run one at a time in the order they were handed over.
    """

    def __init__(
        self,
        open_resource: Callable[[], R],
        *,
        size: int,
        name: str,
        close_resource: Callable[[R], object] | None = None,
    ) -> None:
        self._open = open_resource
        self._close = close_resource
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name} {n}", daemon=True) for n in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    async def run(self, operation: Callable[[R], T]) -> T:
        """Run ``operation(resource)`` on the next free thread."""
        return await hand_over(self._queue, operation)

    async def call(self, func: Callable[[], T]) -> T:
        """Run ``func()`` on the next free thread (an :class:`Offload`)."""
        return await hand_over(self._queue, lambda _: func())

    def stop(self) -> None:
        """End the threads once what is queued is done (blocking: call it from a thread)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _run(self) -> None:
        resource = self._open()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                operation, future, loop = item
                try:
                    result, error = operation(resource), None
                except Exception as exc:
                    forget_frames(exc)
                    result, error = None, exc
                answer(loop, future, result, error)
        finally:
            if self._close is not None:
                self._close(resource)


@asynccontextmanager
async def open_workers(name: str, *, size: int) -> AsyncIterator[WorkerPool[None]]:
    """Threads for blocking work; they end, their queue done, when the context is left."""
    pool: WorkerPool[None] = WorkerPool(lambda: None, size=size, name=name)
    pool.start()
    try:
        yield pool
    finally:
        await anyio.to_thread.run_sync(pool.stop)


def forget_frames(exc: BaseException) -> None:
    """Drop the locals of the frames ``exc`` passed through, keeping its traceback's lines.

    An error carried to a caller would otherwise keep what the operation held
    alive: a SQLite cursor, say, and with it a read of its connection's old
    snapshot. That connection's next ``BEGIN IMMEDIATE`` then fails at once
    with SQLITE_BUSY whenever another connection has written since, and a
    reader would go on reading the old snapshot.
    """
    traceback.clear_frames(exc.__traceback__)
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None and linked is not exc:
            traceback.clear_frames(linked.__traceback__)
