"""What the operations answer: domain values, turned into JSON by :mod:`gatewayd.views` only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from gatewayd.errors import StoreError
from gatewayd.importers.plan import Plan, PlannedJob, PlannedRun
from gatewayd.model import Instance, Job, Run, RunCounts, Session
from gatewayd.settings import Retention


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Facts about this daemon shown by ``gateway.status``."""

    instance_id: str
    pid: int
    host: str
    host_id: str
    state_dir: Path
    socket_path: Path
    started_at: datetime
    store: str = "embedded"  # where its store is, without a password


@dataclass(frozen=True, slots=True, kw_only=True)
class JobState:
    """A job with what is derived from its runs: the one that runs now, the latest."""

    job: Job
    running_run_id: str | None
    last_run: Run | None


class NotRun(StrEnum):
    """Why ``cron run`` started no run."""

    ALREADY_RUNNING = "already-running"  # the job's overlap policy refused; a run is live
    NOT_DUE = "not-due"  # with ``due``: no slot of the job is due


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """The answer to ``cron run``: the run started, or why none was (``run`` is then
    the live one, if any)."""

    ran: bool
    run: Run | None = None
    reason: NotRun | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealthReport:
    """The store's health as ``status`` shows it: since when a fault lasts."""

    fault: StoreError | None
    since: datetime | None
    held_writes: int
    counters: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """``gateway.status``: this daemon, its jobs and runs, its store, the live instances.

    The counts and the instances are ``None`` when the store cannot be read now
    (its fault says why).
    """

    version: str
    identity: Identity
    now: datetime
    jobs_total: int | None
    jobs_enabled: int | None
    runs: RunCounts | None
    instances: tuple[Instance, ...] | None
    active_runs: int
    next_wake_at: datetime | None
    event_subscribers: int
    store: StoreHealthReport
    log_lines_dropped: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """A session (``None`` for a ``main`` that has none yet) with the tails of its files."""

    key: str
    session: Session | None
    transcript_tail: list[Any]
    inbox_tail: list[Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LagProbe:
    """How late 1 ms timers fired on the event loop, in milliseconds."""

    samples: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnd:
    """How an event stream ended: the last seq sent, and whether its reader was dropped."""

    last_seq: int
    follow: bool
    dropped: bool = False


class ImportOutcome(StrEnum):
    IMPORTED = "imported"
    WOULD_IMPORT = "would-import"  # a dry run's
    ALREADY_IMPORTED = "already-imported"
    NAME_TAKEN = "name-taken"
    NOT_CARRIED = "cannot-import"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobImport:
    """What became of one planned job: ``job`` is gatewayd's (the one imported before,
    for ``already-imported``); ``kept`` the runs of its history stored (or that would
    be); the rest are those retention would delete at once, left out."""

    planned: PlannedJob
    outcome: ImportOutcome
    reason: str | None = None
    job: Job | None = None
    kept: tuple[PlannedRun, ...] = ()

    @property
    def beyond_retention(self) -> int:
        brought = self.outcome in (ImportOutcome.IMPORTED, ImportOutcome.WOULD_IMPORT)
        return len(self.planned.history.runs) - len(self.kept) if brought else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    plan: Plan
    dry_run: bool
    jobs: tuple[JobImport, ...]
    retention: Retention

    def count(self, *outcomes: ImportOutcome) -> int:
        return sum(1 for j in self.jobs if j.outcome in outcomes)
