"""The bus: every event durable with the change it tells of, then delivered in seq order.

``publish`` writes events, with the session rows they move, in one
transaction; ``publish_with`` puts them in the transaction of a state change
(a run's start, say), so that the change and its events are durable together
or not at all. The store gives each event its ``seq`` in that transaction, in
commit order, across every instance sharing the store.

Delivery follows the store: an event is offered to subscriptions only in
``seq`` order, each seq once. This instance's own commits are offered as the
store reports them; a gap (another instance committed in between) and the
events of other instances are read from the store, when a hint says some were
appended, and every ``backstop`` whatever happens. A subscription is a bounded
queue: one that falls ``queue_size`` events behind is dropped, and its reader
gets a gap marker that says from which ``seq`` on it missed events. A slow
reader never delays a run.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import anyio
import anyio.abc
import structlog

from gatewayd.broker import Broker, Hint, HintWatch
from gatewayd.events import Event
from gatewayd.sessions import session_row
from gatewayd.settings import CLUSTER, GATEWAY
from gatewayd.store.base import Envelope, Publication, Store
from gatewayd.views import event_to_json

log = structlog.get_logger("gatewayd.bus")

T = TypeVar("T")
# Events read from the store at once while catching up.
_PAGE = 1000


class Subscription:
    """An out-of-band subscriber's bounded queue of envelopes."""

    def __init__(self, queue_size: int, streams: frozenset[str] | None = None) -> None:
        self._queue: collections.deque[Envelope] = collections.deque()
        self._size = queue_size
        self._streams = streams
        self._ready = anyio.Event()
        self.dropped = False
        self.closed = False

    def offer(self, envelope: Envelope) -> None:
        if self.closed or (self._streams is not None and envelope["stream"] not in self._streams):
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
    """Publishes and delivers events; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        broker: Broker,
        queue_size: int = GATEWAY.event_queue,
        backstop_s: float = CLUSTER.backstop_s,
    ) -> None:
        self._store = store
        self._broker = broker
        self._queue_size = queue_size
        self._backstop_s = backstop_s
        self._subscriptions: set[Subscription] = set()
        self._internal: set[Subscription] = set()
        self._tail: int | None = None  # the last seq offered
        self._watch: HintWatch | None = None  # the follower's, while it follows
        store.watch_events(self._committed)

    async def open(self) -> None:
        """Start at the store's last event: what follows is offered (before any publish)."""
        if self._tail is None:
            self._tail = await self._store.last_event_seq()

    @contextlib.contextmanager
    def subscribe(
        self,
        *,
        queue_size: int | None = None,
        internal: bool = False,
        streams: frozenset[str] | None = None,
    ) -> Iterator[Subscription]:
        """An out-of-band subscription to the events delivered while it is open.

        With ``streams``, only the events of those streams are queued (and the
        gap marker, if it falls behind). An ``internal`` one (the timer's, a
        waiter's) is not counted among the :attr:`subscribers`.
        """
        subscription = Subscription(queue_size or self._queue_size, streams)
        self._subscriptions.add(subscription)
        if internal:
            self._internal.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            self._internal.discard(subscription)
            subscription.close()

    @property
    def last_seq(self) -> int:
        """The seq of the latest event offered to subscribers (0 before any)."""
        return self._tail or 0

    @property
    def subscribers(self) -> int:
        """How many clients follow the events."""
        return len(self._subscriptions - self._internal)

    async def publish(self, *events: Event) -> None:
        """Persist ``events`` and the session rows they move."""
        await self.publish_with(self._store.publish, *events)

    async def publish_with(self, write: Callable[[Publication], Awaitable[T]], *events: Event) -> T:
        """``write(publication)``: a state change that also writes ``events``; its result.

        Once called, a publication is seen through: a publisher cancelled
        meanwhile waits for it (a write handed to the store goes on regardless).
        """
        rows = (session_row(event) for event in events)
        publication = Publication(
            events=tuple(event_to_json(event) for event in events),
            sessions=tuple(row for row in rows if row is not None),
        )
        with anyio.CancelScope(shield=True):
            result = await write(publication)
        if publication.events:
            self._broker.hint(Hint.EVENTS_APPENDED, origin=self)
        return result

    def _committed(self, envelopes: Sequence[Envelope]) -> None:
        """This store object's commit: offered at once unless another's came between."""
        for envelope in envelopes:
            if self._tail is None or envelope["seq"] <= self._tail:
                continue
            if envelope["seq"] != self._tail + 1:
                if self._watch is not None:
                    self._watch.arrive()  # a gap: the follower reads it, and these, from the store
                return
            self._offer(envelope)

    async def follow(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read the events other instances append, and gaps, from the store; until cancelled."""
        await self.open()
        with self._broker.listen(Hint.EVENTS_APPENDED, Hint.JOBS_CHANGED, origin=self) as watch:
            self._watch = watch
            task_status.started()
            try:
                while True:
                    try:
                        await self.catch_up()
                    except Exception:
                        log.exception("could not read events from the store; trying again later")
                    await watch.wait(backstop_s=self._backstop_s)
            finally:
                self._watch = None

    async def catch_up(self) -> None:
        """Offer every event the store holds after the last one offered."""
        assert self._tail is not None, "Bus.open() first"
        while True:
            page = await self._store.events_after(self._tail, limit=_PAGE)
            for envelope in page:
                if envelope["seq"] > self._tail:
                    self._offer(envelope)
            if len(page) < _PAGE:
                return

    def _offer(self, envelope: Envelope) -> None:
        self._tail = envelope["seq"]
        for subscription in list(self._subscriptions):
            subscription.offer(envelope)
            if subscription.dropped:
                self._subscriptions.discard(subscription)
                self._internal.discard(subscription)
                log.warning("dropped a slow event subscriber", missed_from_seq=envelope["seq"])

    def close_subscriptions(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()
        self._internal.clear()
