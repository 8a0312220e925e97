"""The values the store interface speaks in: publications, health, audits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatewayd.errors import Conflict, StoreError
from gatewayd.model import Job, JobTiming, Session, elapsed_ms

Envelope = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """A job the timer finds due: its id, and the next slot it saw."""

    job_id: str
    next_slot: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DueClaims:
    """What a claim of due jobs got (see :meth:`Store.claim_due`).

    ``mine``: the jobs now claimed, their slots as seen. ``moved``: jobs whose
    slot is not the one seen, or that are disabled: the timer times them again.
    ``held``: jobs another instance holds (or is claiming), each with the seconds
    until its claim lapses by the store's clock. ``gone``: jobs that no longer
    exist.
    """

    mine: tuple[str, ...] = ()
    moved: tuple[JobTiming, ...] = ()
    held: tuple[tuple[str, float], ...] = ()
    gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """Events, and the session rows they move, written in one transaction with a change.

    ``events`` are their bodies: the store gives each its ``seq`` in the
    transaction, above every ``seq`` ever stored, in commit order. A session
    given with its ``started_at`` replaces the row with its key; one without (an
    ending) records that row's ending (see :meth:`Store.publish`).
    """

    events: tuple[dict[str, Any], ...] = ()
    sessions: tuple[Session, ...] = ()

    @staticmethod
    def replaces(session: Session) -> bool:
        """Whether writing ``session`` replaces its row (else it records an ending)."""
        return session.started_at is not None

    def rows(self) -> list[Session]:
        """The session rows to write, in order.

        A start followed by the ending of the same session (work that was over
        before its start was recorded) becomes one row: ended, with its start.
        """
        rows: list[Session] = []
        for session in self.sessions:
            last = rows[-1] if rows else None
            if (
                last is not None
                and last.started_at is not None
                and last.key == session.key
                and not self.replaces(session)
                and session.ended_at is not None
            ):
                rows[-1] = dataclasses.replace(
                    session,
                    started_at=last.started_at,
                    runtime_ms=elapsed_ms(last.started_at, session.ended_at),
                )
            else:
                rows.append(session)
        return rows


NOTHING = Publication()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """Whether the store takes writes now, and if not, why and how much it holds.

    ``fault`` is a :class:`gatewayd.errors.StoreUnwritable` or
    :class:`gatewayd.errors.StoreCorrupt`. ``held`` counts the writes the store
    keeps to write, in order, once it can (the endings of runs, say).
    """

    fault: StoreError | None = None
    held: int = 0

    @property
    def writable(self) -> bool:
        return self.fault is None

    def refusal(self) -> StoreError | None:
        """A fresh copy of the fault, to raise where a write is refused; ``None`` if writable."""
        fault = self.fault
        return None if fault is None else type(fault)(fault.message, data=fault.data)


HealthListener = Callable[[StoreHealth], None]
EventsListener = Callable[[Sequence[Envelope]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotClaims:
    """A slot claimed by more than one run (what the unique slot index forbids)."""

    job_id: str
    scheduled_for: datetime
    runs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadEnding:
    """A run whose status, ``started_at`` and ``ended_at`` disagree."""

    run_id: str
    job_id: str
    status: str
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """What ``doctor`` asks of any store: records that break the invariants, as stored."""

    slots_used_twice: tuple[SlotClaims, ...] = ()
    bad_endings: tuple[BadEnding, ...] = ()


def check_origins_apart(jobs: Sequence[Job]) -> None:
    """Refuse a batch that gives one origin to two of its jobs (before it is written)."""
    seen: set[str] = set()
    for job in jobs:
        if job.origin is not None:
            if job.origin.key in seen:
                raise origin_taken(job)
            seen.add(job.origin.key)


def origin_taken(job: Job) -> Conflict:
    """The refusal of a job whose origin another job has: it was imported before."""
    assert job.origin is not None
    return Conflict(
        f"job {job.name!r}: {job.origin.system} job {job.origin.id} was imported already",
        data={"origin": job.origin.key},
    )
