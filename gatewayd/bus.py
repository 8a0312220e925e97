"""The lifecycle bus: every event persisted with its ``seq``, then delivered.

``publish`` persists events (each with its strictly increasing ``seq``), with
the session rows they move, in one transaction; ``publish_with`` puts them in
the transaction of a state change (a run's start, say), so that the change
and its events are durable together or not at all. Only then is each event
offered to every out-of-band subscription, without waiting. A subscription is a bounded
queue: one that falls ``queue_size`` events behind is dropped, and its reader
gets a gap marker that says from which ``seq`` on it missed events. A slow
reader never delays a run.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import structlog

from gatewayd.events import Event
from gatewayd.sessions import session_row
from gatewayd.settings import GATEWAY
from gatewayd.store.base import Publication, Store

log = structlog.get_logger("gatewayd.bus")

T = TypeVar("T")
Envelope = dict[str, Any]


class Subscription:
    """An out-of-band subscriber's bounded queue of envelopes."""

    def __init__(self, queue_size: int) -> None:
        self._queue: collections.deque[Envelope] = collections.deque()
        self._size = queue_size
        self._ready = anyio.Event()
        self.dropped = False
        self.closed = False

    def offer(self, envelope: Envelope) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._size:
            self.dropped = True
            self.closed = True
            self._queue.append(
                {
                    "seq": None,
                    "ts": envelope["ts"],
                    "stream": "gap",
                    "phase": "dropped",
                    "missed_from_seq": envelope["seq"],
                    "reason": f"the subscriber fell {self._size} events behind and was dropped; "
                    "read the rest with events.subscribe since the last seq seen",
                }
            )
        else:
            self._queue.append(envelope)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Envelope]:
        while True:
            while self._queue:
                yield self._queue.popleft()
            if self.closed:
                return
            self._ready = anyio.Event()
            if self._queue or self.closed:
                continue
            await self._ready.wait()


class Bus:
    """Publishes events; see the module docstring."""

    def __init__(self, store: Store, *, queue_size: int = GATEWAY.event_queue) -> None:
        self._store = store
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._seeding = anyio.Lock()
        self._next_seq: int | None = None
        self._next_delivery = 0
        self._delivered: dict[int, Envelope | None] = {}

    @contextlib.contextmanager
    def subscribe(self, *, queue_size: int | None = None) -> Iterator[Subscription]:
        """An out-of-band subscription to the events published while it is open."""
        subscription = Subscription(queue_size or self._queue_size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    async def _seeded(self) -> int:
        if self._next_seq is None:
            async with self._seeding:
                if self._next_seq is None:
                    self._next_seq = self._next_delivery = await self._store.last_event_seq() + 1
        return self._next_seq

    async def publish(self, *events: Event) -> list[Envelope]:
        """Persist ``events`` and the session rows they move, then offer them to subscribers."""
        _, envelopes = await self._publish(self._store.publish, events)
        return envelopes

    async def publish_with(self, write: Callable[[Publication], Awaitable[T]], *events: Event) -> T:
        """``write(publication)``: a state change that also writes ``events``; its result.

        ``write`` must hand its work to the store before it first suspends. The
        events are offered to subscribers only once it has returned. Once called,
        a publication is seen through: a publisher cancelled meanwhile waits for it.
        """
        result, _ = await self._publish(write, events)
        return result

    async def _publish(
        self, write: Callable[[Publication], Awaitable[T]], events: tuple[Event, ...]
    ) -> tuple[T, list[Envelope]]:
        # Shielded: a write once handed to the store goes on regardless, so a
        # publisher cancelled meanwhile waits for it, and its events are offered.
        # The seqs are taken and the write queued in one step (no suspension in
        # between), so writes, which the store commits in the order queued, go in
        # seq order; subscribers get events in seq order too, each once durable.
        with anyio.CancelScope(shield=True):
            bodies = [event.body() for event in events]
            first = await self._seeded()
            self._next_seq = first + len(bodies)
            seqs = range(first, first + len(bodies))
            rows = (session_row(event) for event in events)
            publication = Publication(
                events=tuple(zip(seqs, bodies, strict=True)),
                sessions=tuple(row for row in rows if row is not None),
            )
            try:
                result = await write(publication)
            except BaseException:
                for seq in seqs:
                    self._deliver(seq, None)
                raise
            envelopes = [{"seq": seq, **body} for seq, body in publication.events]
            for envelope in envelopes:
                self._deliver(envelope["seq"], envelope)
        return result, envelopes

    def _deliver(self, seq: int, envelope: Envelope | None) -> None:
        """Offer envelopes to subscribers in ``seq`` order, as each becomes ready."""
        self._delivered[seq] = envelope
        while self._next_delivery in self._delivered:
            ready = self._delivered.pop(self._next_delivery)
            self._next_delivery += 1
            if ready is None:
                continue
            for subscription in list(self._subscriptions):
                subscription.offer(ready)
                if subscription.dropped:
                    self._subscriptions.discard(subscription)
                    log.warning("dropped a slow event subscriber", missed_from_seq=ready["seq"])

    def close_subscriptions(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()
