"""A store held in memory: for unit tests, and the reference for the contract.

One object may be shared by several pipelines (instances) in one process; its
clock, which judges leases, is the one it is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import anyio.lowlevel

from gatewayd.errors import LockBusy, NotFound
from gatewayd.model import MAIN_SESSION_KEY, Session
from gatewayd.store.base import (
    Audit,
    BadEnding,
    EventsListener,
    Publication,
    SlotClaims,
    Store,
)
from gatewayd.store.memoryalerts import MemoryAlerts
from gatewayd.store.memoryinstances import MemoryInstances
from gatewayd.store.memoryjobs import MemoryJobs
from gatewayd.store.memoryruns import MemoryRuns
from gatewayd.store.transitions import ending_problems, slot_key


class MemoryStore(MemoryInstances, MemoryJobs, MemoryRuns, MemoryAlerts, Store):
    """Every record in dictionaries; nothing survives the process."""

    async def open(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()

    @asynccontextmanager
    async def hold_lock(self, name: str, *, wait_s: float) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, anyio.Semaphore(1))  # held by instances, not tasks
        try:
            with anyio.fail_after(wait_s):
                await lock.acquire()
        except TimeoutError:
            raise LockBusy.waited(name, wait_s) from None
        try:
            yield
        finally:
            lock.release()

    # --- sessions and events -----------------------------------------------------------
    async def publish(self, publication: Publication) -> None:
        await anyio.lowlevel.checkpoint()
        self._apply(publication)

    def watch_events(self, listener: EventsListener) -> None:
        self._event_listeners.append(listener)

    async def main_session_id(self, candidate: str) -> str:
        await anyio.lowlevel.checkpoint()
        if self._main_session_id is None:
            main = self._sessions.get(MAIN_SESSION_KEY)
            self._main_session_id = candidate if main is None else main.session_id
        return self._main_session_id

    async def get_session(self, key: str) -> Session | None:
        await anyio.lowlevel.checkpoint()
        return self._sessions.get(key)

    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        await anyio.lowlevel.checkpoint()

        def order(session: Session) -> tuple[bool, datetime | None, str]:
            return (session.started_at is not None, session.started_at, session.key)

        ordered = sorted(self._sessions.values(), key=order, reverse=True)
        if before is not None:
            cursor = self._sessions.get(before)
            if cursor is None:
                raise NotFound(f"no session with key {before!r}")
            ordered = ordered[ordered.index(cursor) + 1 :]
        return ordered[:limit]

    async def last_event_seq(self) -> int:
        await anyio.lowlevel.checkpoint()
        return self._event_seq

    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        await anyio.lowlevel.checkpoint()
        return [dict(e) for e in self._events if e["seq"] > seq][:limit]

    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        await anyio.lowlevel.checkpoint()
        return [dict(e) for e in self._events[-limit:]] if limit > 0 else []

    async def prune_events(self, *, keep: int) -> int:
        await anyio.lowlevel.checkpoint()
        gone = max(0, len(self._events) - keep)
        del self._events[:gone]
        return gone

    async def audit(self) -> Audit:
        await anyio.lowlevel.checkpoint()
        claims: dict[tuple[str, datetime], int] = {}
        for run in self._runs.values():
            key = slot_key(run)
            if key is not None:
                claims[key] = claims.get(key, 0) + 1
        bad = [
            BadEnding(run_id=r.run_id, job_id=r.job_id, status=r.status.value, problem=problem)
            for r in self._runs.values()
            for problem in ending_problems(r)
        ]
        return Audit(
            slots_used_twice=tuple(
                SlotClaims(job_id=job_id, scheduled_for=slot, runs=n)
                for (job_id, slot), n in sorted(claims.items())
                if n > 1
            ),
            bad_endings=tuple(bad),
        )
