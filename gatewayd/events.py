"""Lifecycle, run and job events: frozen, past-tense facts published on the bus.

Their JSON (:func:`gatewayd.views.event_to_json`, with the ``seq`` the store
gives them) is the contract of DESIGN.md: lifecycle events carry every key,
``null`` where it does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from gatewayd.model import ErrorKind, Job, JobSource, Run, RunStatus, StopReason

LIFECYCLE = "lifecycle"
RUN = "run"
JOB = "job"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened at ``ts``."""

    stream: ClassVar[str]
    phase: ClassVar[str]
    ts: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent(Event):
    stream: ClassVar[str] = LIFECYCLE
    run_id: str
    job_id: str
    session_key: str
    session_id: str
    error: str | None = None
    error_kind: ErrorKind | None = None
    stop_reason: StopReason | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(LifecycleEvent):
    phase: ClassVar[str] = "start"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(LifecycleEvent):
    phase: ClassVar[str] = "end"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailed(LifecycleEvent):
    phase: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent(Event):
    stream: ClassVar[str] = RUN
    run_id: str
    job_id: str
    job_name: str
    status: RunStatus
    trigger: str

    @classmethod
    def of(cls, run: Run, ts: datetime) -> RunEvent:
        return cls(
            ts=ts,
            run_id=run.run_id,
            job_id=run.job_id,
            job_name=run.job_name,
            status=run.status,
            trigger=run.trigger.value,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQueued(RunEvent):
    phase: ClassVar[str] = "queued"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(RunEvent):
    phase: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(RunEvent):
    phase: ClassVar[str] = "finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent(Event):
    """A change of a job, by ``source`` (a user through the API, or the config file),
    made by instance ``instance``: what tells other instances' timers."""

    stream: ClassVar[str] = JOB
    job_id: str
    name: str
    source: JobSource
    instance: str

    @classmethod
    def of(cls, job: Job, ts: datetime, *, source: JobSource, instance: str) -> JobEvent:
        return cls(ts=ts, job_id=job.id, name=job.name, source=source, instance=instance)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAdded(JobEvent):
    phase: ClassVar[str] = "added"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobUpdated(JobEvent):
    phase: ClassVar[str] = "updated"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEnabled(JobEvent):
    phase: ClassVar[str] = "enabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDisabled(JobEvent):
    phase: ClassVar[str] = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPaused(JobEvent):
    """Its schedule paused after failures in a row (``pause_after``)."""

    phase: ClassVar[str] = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRemoved(JobEvent):
    phase: ClassVar[str] = "removed"
