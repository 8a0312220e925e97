"""What an import would bring: jobs as specs, with their history and what stays behind.

An importer reads another scheduler's files into a :class:`Plan` and changes
nothing; :mod:`gatewayd.api.imports` checks the plan against the store and
applies it in one transaction, or reports it (``--dry-run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatewayd.model import RunStatus, Trigger

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRun:
    """One ended run of the other scheduler's history."""

    status: RunStatus
    trigger: Trigger
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    error: str | None = None
    summary: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """A job's history as read: its runs, oldest first, and the lines that did not parse."""

    source: str | None = None  # the file or table it was read from
    runs: tuple[PlannedRun, ...] = ()
    broken: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedJob:
    """One job of the other scheduler, as gatewayd would hold it.

    ``spec`` is the job in gatewayd's JSON shape, or ``None`` with ``refusal``
    saying why it cannot be carried over at all. ``left_behind`` names, one by
    one, the settings that cannot be carried over; ``notes`` what was decided
    for the job (a zone taken from the host, a flag not copied).
    """

    origin_id: str
    name: str | None
    spec: JsonObject | None
    refusal: str | None = None
    left_behind: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    history: History = History()


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything an import would bring from one store of another scheduler."""

    system: str
    store: str  # which shape of the other scheduler's store was read
    paths: tuple[str, ...]
    jobs: tuple[PlannedJob, ...]
    notes: tuple[str, ...] = ()
