"""Time, injected: the :class:`Clock` protocol, the system clock and a fake one.

Every part of gatewayd that needs the time takes a clock, so that a test can move
an hour ahead in no time with :class:`FakeClock`.
"""

from __future__ import annotations

import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel

# The system clock re-reads the wall clock at least this often while it sleeps,
# so that a suspended machine or a stepped clock delays a slot by at most this.
MAX_SLEEP_S = 30.0


class Clock(Protocol):
    """A source of time and of sleeping.

    ``now()`` is aware and in UTC. ``monotonic()`` never goes backwards and is for
    measuring durations. ``sleep_until(when)`` returns once ``now() >= when``
    (at once if it already is) and is cancellable.
    """

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep_until(self, when: datetime) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real wall clock and the event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, when: datetime) -> None:
        while True:
            delay = (when - self.now()).total_seconds()
            if delay <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(min(delay, MAX_SLEEP_S))

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class FakeClock:
    """A clock that only moves when a test moves it.

    Sleepers wake, in deadline order, when :meth:`advance` or :meth:`set` moves
    the time past their deadline. :meth:`wait_for_sleeper` lets a test wait
    until the code under test is asleep, instead of guessing with a real sleep.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._order = itertools.count()
        self._sleeper_added: anyio.Event | None = None

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        heapq.heappush(self._sleepers, (when, next(self._order), woken))
        self._sleepers_changed()
        try:
            await woken.wait()
        finally:
            woken.set()
            self._sleepers_changed()  # a sleeper that gave up may have been the earliest

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=seconds))

    def _sleepers_changed(self) -> None:
        if self._sleeper_added is not None:
            self._sleeper_added.set()
            self._sleeper_added = None

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError(f"a FakeClock cannot go back from {self._now} to {when}")
        self._mono += (when - self._now).total_seconds()
        self._now = when
        while self._sleepers and self._sleepers[0][0] <= when:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest deadline of a sleeper that is still waiting."""
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def wait_for_sleeper(self, *, until: datetime | None = None) -> datetime:
        """Wait until something sleeps, until ``until`` if given (the earliest sleeper's
        deadline is ``until``); return its deadline."""
        while True:
            deadline = self.next_deadline
            if deadline is not None and (until is None or deadline == until):
                return deadline
            if self._sleeper_added is None:
                self._sleeper_added = anyio.Event()
            await self._sleeper_added.wait()
