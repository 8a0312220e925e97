"""The one race: wait for the first of several things to happen, then stop waiting for the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio


async def first_of(*waits: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """Await every ``wait()`` at once; return the index and value of the first to return.

    The others are cancelled before this returns. An exception from any of them,
    before one has returned, propagates as itself (and cancels the rest); a
    cancellation of the caller cancels them all. The first runs in the caller's
    own task, the others in tasks of their own: put first what usually happens
    first, and the caller goes on as soon as it does, with no task to switch to.
    """
    if not waits:
        raise ValueError("first_of needs at least one thing to wait for")
    winner: tuple[int, Any] | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def one(index: int, wait: Callable[[], Awaitable[Any]]) -> None:
                nonlocal winner
                value = await wait()
                if winner is None:
                    winner = (index, value)
                    tg.cancel_scope.cancel()

            for index, wait in enumerate(waits[1:], start=1):
                tg.start_soon(one, index, wait)
            await one(0, waits[0])
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None  # one failure: raised as itself
        raise
    assert winner is not None  # the group ends early only when one of them won
    return winner
