"""Hints between instances sharing a store: "something changed, look now".

A hint only wakes an instance sooner: no promise depends on one arriving. Every
instance also looks by itself every ``backstop`` (``[cluster] backstop``, 2 s by
default): at the events appended (which carry job changes) and at the stops
asked of its runs. A SQLite store is shared only within one host, and its
hints stay in the process (:class:`LocalBroker`); a database shared by hosts
carries them in its own way (PostgreSQL's ``NOTIFY``), behind the same interface.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import anyio
import anyio.abc

from gatewayd.racing import first_of


class Hint(enum.StrEnum):
    JOBS_CHANGED = "jobs-changed"
    CANCEL_REQUESTED = "cancel-requested"
    EVENTS_APPENDED = "events-appended"


class HintWatch:
    """One listener's view of one hint: whether it arrived since the last look."""

    def __init__(self) -> None:
        self._arrived = anyio.Event()

    def arrive(self) -> None:
        self._arrived.set()

    async def wait(self, *, backstop_s: float) -> None:
        """Return once the hint arrives, or after ``backstop_s`` whatever happens.

        The backstop is real time, whatever clock the instance is given: it
        bounds how long a lost hint delays a change, in the time a user waits.
        """
        if not self._arrived.is_set():
            await first_of(self._arrived.wait, lambda: anyio.sleep(backstop_s))
        self._arrived = anyio.Event()


class Broker(abc.ABC):
    """Carries hints to every instance that listens (the sender's own listeners too)."""

    @abc.abstractmethod
    def hint(self, hint: Hint, *, origin: object = None) -> None:
        """Tell every listener that ``hint`` happened, without waiting; it may be lost.

        Listeners with the same ``origin`` (the sender itself) are not told.
        """

    @abc.abstractmethod
    def listen(self, *hints: Hint, origin: object = None) -> AbstractContextManager[HintWatch]:
        """A watch that wakes on any of ``hints`` but those from ``origin``, while the
        context lasts."""

    async def relay(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Carry hints to and from other processes, until cancelled (its owner runs it).

        A broker within one process has nothing to carry.
        """
        task_status.started()
        await anyio.sleep_forever()


class LocalBroker(Broker):
    """Hints within one process (instances that share a store in one process share it)."""

    def __init__(self) -> None:
        self._watches: dict[Hint, dict[HintWatch, object]] = {hint: {} for hint in Hint}

    def hint(self, hint: Hint, *, origin: object = None) -> None:
        for watch, listener in self._watches[hint].items():
            if origin is None or listener is not origin:
                watch.arrive()

    @contextmanager
    def listen(self, *hints: Hint, origin: object = None) -> Iterator[HintWatch]:
        watch = HintWatch()
        for hint in hints:
            self._watches[hint][watch] = origin
        try:
            yield watch
        finally:
            for hint in hints:
                self._watches[hint].pop(watch, None)
