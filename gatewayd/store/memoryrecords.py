"""The memory store's records, and the helpers its parts share."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime

import anyio

from gatewayd.alerting.values import Alert
from gatewayd.clock import Clock, SystemClock
from gatewayd.errors import NameTaken, NotFound
from gatewayd.model import (
    Instance,
    Job,
    Run,
    Session,
    elapsed_ms,
)
from gatewayd.store.base import Envelope, EventsListener, Publication
from gatewayd.store.transitions import check_holder


class MemoryRecords:
    """Every record in dictionaries; nothing survives the process."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._jobs: dict[str, Job] = {}
        self._runs: dict[str, Run] = {}
        self._seq: dict[str, int] = {}
        self._slots: set[tuple[str, datetime]] = set()
        self._instances: dict[str, Instance] = {}
        self._counter = itertools.count(1)
        self._sessions: dict[str, Session] = {}
        self._main_session_id: str | None = None
        self._events: list[Envelope] = []
        self._event_seq = 0
        self._event_listeners: list[EventsListener] = []
        self._locks: dict[str, anyio.Semaphore] = {}
        self._alerts: dict[str, Alert] = {}

    def _live(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id}")
        return run

    def _fence(self, owner: str | None) -> None:
        """Refuse a write about runs of ``owner`` if it was taken over (see ``check_holder``)."""
        instance = self._instances.get(owner) if owner is not None else None
        check_holder(owner, None if instance is None else instance.state)

    def _apply(self, publication: Publication) -> None:
        for session in publication.rows():
            if publication.replaces(session):
                self._sessions[session.key] = session
                continue
            current = self._sessions.get(session.key)
            started_at = current.started_at if current is not None else None
            runtime = None
            if started_at is not None and session.ended_at is not None:
                runtime = elapsed_ms(started_at, session.ended_at)
            self._sessions[session.key] = dataclasses.replace(
                session, started_at=started_at, runtime_ms=runtime
            )
        if not publication.events:
            return
        envelopes: list[Envelope] = []
        for body in publication.events:
            self._event_seq += 1
            envelopes.append({"seq": self._event_seq, **body})
        self._events.extend(envelopes)
        for listener in self._event_listeners:
            listener(envelopes)

    def _check_name(self, job: Job) -> None:
        for other in self._jobs.values():
            if other.name == job.name and other.id != job.id:
                raise NameTaken(
                    f"the name {job.name!r} is taken by job {other.id}", data={"name": job.name}
                )
