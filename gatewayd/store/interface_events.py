"""The store interface, its sessions and events."""

from __future__ import annotations

import abc
from typing import Any

from gatewayd.model import Session
from gatewayd.store.values import EventsListener, Publication


class EventStore(abc.ABC):
    """Sessions, and the events every instance reads in commit order."""

    @abc.abstractmethod
    async def main_session_id(self, candidate: str) -> str:
        """The id of the shared ``main`` session: the one stored, else ``candidate``,
        stored now. Every instance sharing the store gets the same id."""

    @abc.abstractmethod
    async def get_session(self, key: str) -> Session | None:
        """The session, or ``None``."""

    @abc.abstractmethod
    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        """Up to ``limit`` sessions, ``main`` among them, in one order that pages can follow.

        The order: the most recently started first, sessions started in the same
        instant by key (descending), those without a start last (by key,
        descending). With ``before`` (a session's key), only the sessions after it
        in that order; :class:`gatewayd.errors.NotFound` if there is no such session.
        """

    @abc.abstractmethod
    async def publish(self, publication: Publication) -> None:
        """Write events and session rows, all in one transaction or none.

        Each event gets the next ``seq`` (see :class:`Publication`); those who
        watch the store's events hear of them once committed (see
        :meth:`watch_events`). A session with its ``started_at`` is inserted or
        replaces the row with its key. A session without (an ending) records its
        ending: every field but ``started_at``, which is kept from the stored
        row, with ``runtime_ms`` derived from it; with no stored row it is
        recorded with no start. See :meth:`Publication.rows`.
        """

    @abc.abstractmethod
    def watch_events(self, listener: EventsListener) -> None:
        """Call ``listener(envelopes)`` on the event loop with the events this store
        object commits, with their ``seq``, right after each commit, in commit order.

        Events that other instances commit to a shared store are not heard here:
        read them with :meth:`events_after`.
        """

    @abc.abstractmethod
    async def last_event_seq(self) -> int:
        """The highest ``seq`` ever stored, pruned or not (0 if none): never to be reused."""

    @abc.abstractmethod
    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` events with a ``seq`` above ``seq``, oldest first, with ``seq``."""

    @abc.abstractmethod
    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first, with ``seq``."""

    @abc.abstractmethod
    async def prune_events(self, *, keep: int) -> int:
        """Delete all but the newest ``keep`` events; how many went."""
