"""Lifecycle and run events: frozen, past-tense facts published on the bus.

Their JSON (with the ``seq`` the bus gives them) is the contract of DESIGN.md:
lifecycle events carry every key, ``null`` where it does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from gatewayd.durations import format_time
from gatewayd.model import ErrorKind, Run, RunStatus, StopReason

LIFECYCLE = "lifecycle"
RUN = "run"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened at ``ts``."""

    stream: ClassVar[str]
    phase: ClassVar[str]
    ts: datetime

    def body(self) -> dict[str, Any]:
        return {"ts": format_time(self.ts), "stream": self.stream, "phase": self.phase}


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

    def body(self) -> dict[str, Any]:
        return {
            **Event.body(self),
            "run_id": self.run_id,
            "job_id": self.job_id,
            "session_key": self.session_key,
            "session_id": self.session_id,
            "error": self.error,
            "error_kind": self.error_kind.value if self.error_kind else None,
            "stop_reason": None if self.stop_reason is None else self.stop_reason.value,
        }


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

    def body(self) -> dict[str, Any]:
        return {
            **Event.body(self),
            "run_id": self.run_id,
            "job_id": self.job_id,
            "job_name": self.job_name,
            "status": self.status.value,
            "trigger": self.trigger,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQueued(RunEvent):
    phase: ClassVar[str] = "queued"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(RunEvent):
    phase: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(RunEvent):
    phase: ClassVar[str] = "finished"
