"""first_of: the one race of the pipeline and the timer (a stop, a deadline, an ending)."""

from __future__ import annotations

import anyio
import pytest
from gatewayd.racing import first_of


class TestFirstOf:
    async def test_the_first_to_return_wins_and_the_rest_are_cancelled(self) -> None:
        """The index and value of the first wait to return; every other wait is cancelled
        before first_of returns."""
        go = anyio.Event()
        cancelled: list[str] = []

        async def slow() -> str:
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.append("slow")
            return "never"

        async def soon() -> str:
            await go.wait()
            return "soon"

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _set_later(go))
            assert await first_of(slow, soon) == (1, "soon")
        assert cancelled == ["slow"]

    async def test_a_failure_before_any_return_propagates(self) -> None:
        """An exception from a wait, before any has returned, is raised to the caller."""

        async def fails() -> None:
            await anyio.lowlevel.checkpoint()
            raise LookupError("gone")

        with pytest.raises(LookupError, match="gone"):
            await first_of(anyio.sleep_forever, fails)

    async def test_the_callers_cancellation_cancels_every_wait(self) -> None:
        """Cancelling the caller cancels its waits, and first_of returns nothing."""
        returned: list[object] = []
        with anyio.move_on_after(0.01) as scope:
            returned.append(await first_of(anyio.sleep_forever, anyio.sleep_forever))
        assert scope.cancelled_caught and returned == []

    async def test_nothing_to_wait_for_is_refused(self) -> None:
        """first_of() with no waits is a programming error, said at once."""
        with pytest.raises(ValueError, match="at least one"):
            await first_of()


async def _set_later(event: anyio.Event) -> None:
    await anyio.lowlevel.checkpoint()
    event.set()
