"""How runs end: the one terminal outcome of a run, from how its work ended or why it stopped.

Pure functions of their arguments (the time is given, never read): a stop
(timeout, cancel) decides over whatever the stopped work exited with; work
that ended without leaving a status is ``interrupted``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from gatewayd.model import ErrorKind, Run, RunOutcome, RunStatus, StopReason
from gatewayd.runners.base import ExecResult

TIMEOUT_ERROR = "job execution timed out"
_STOP_ERRORS = {
    StopReason.CANCELLED: "cancelled on request",
    StopReason.REPLACED: "cancelled: replaced by a newer run of the job",
    StopReason.SHUTDOWN: "cancelled: the daemon shut down",
    StopReason.JOB_REMOVED: "cancelled: the job was removed",
}
# The lifecycle stop_reason of an ending that was neither a stop nor a success.
_SESSION_STOPS = {RunStatus.INTERRUPTED: StopReason.INTERRUPTED}


def outcome_for(
    result: ExecResult, stop_reason: StopReason | None, *, ended_at: datetime
) -> RunOutcome:
    """The terminal outcome of a run whose work ended with ``result``, stopped for ``stop_reason``.

    ``ended_at`` is used where ``result`` does not know better.
    """
    common = {
        "ended_at": result.ended_at or ended_at,
        "summary": result.summary,
        "output_tail": result.output_tail,
        "leftovers": result.leftovers,
    }
    if stop_reason is StopReason.TIMEOUT:
        return RunOutcome(
            status=RunStatus.TIMED_OUT,
            exit_code=result.exit_code,
            error=TIMEOUT_ERROR,
            error_kind=ErrorKind.TIMEOUT,
            stop_reason=StopReason.TIMEOUT,
            **common,  # type: ignore[arg-type]
        )
    if stop_reason is not None:
        return RunOutcome(
            status=RunStatus.CANCELLED,
            exit_code=result.exit_code,
            error=_STOP_ERRORS.get(stop_reason, f"cancelled: {stop_reason.value}"),
            error_kind=ErrorKind.CANCELLED,
            stop_reason=stop_reason,
            **common,  # type: ignore[arg-type]
        )
    if result.lost:
        return RunOutcome(
            status=RunStatus.INTERRUPTED,
            error=result.error,
            error_kind=ErrorKind.INTERRUPTED,
            stop_reason=StopReason.LOST,
            **common,  # type: ignore[arg-type]
        )
    if result.signal is not None:
        return RunOutcome(
            status=RunStatus.FAILED,
            exit_code=result.exit_code,
            error=result.error,
            error_kind=ErrorKind.SIGNAL,
            **common,  # type: ignore[arg-type]
        )
    if result.exit_code == 0:
        return RunOutcome(status=RunStatus.SUCCEEDED, exit_code=0, **common)  # type: ignore[arg-type]
    return RunOutcome(
        status=RunStatus.FAILED,
        exit_code=result.exit_code,
        error=result.error or f"exited with code {result.exit_code}",
        error_kind=ErrorKind.EXIT,
        **common,  # type: ignore[arg-type]
    )


def stopped(reason: StopReason, *, at: datetime) -> RunOutcome:
    """The outcome of a run stopped for ``reason`` before its work left any result."""
    return outcome_for(ExecResult(), reason, ended_at=at)


def ended_by_itself(run: Run, result: ExecResult, *, at: datetime) -> RunOutcome:
    """The outcome of work that ended by itself; never ending before the run's start
    (a file's time is coarser than the clock)."""
    if result.ended_at is not None and run.started_at is not None:
        result = replace(result, ended_at=max(result.ended_at, run.started_at))
    return outcome_for(result, None, ended_at=at)


def stopped_after(result: ExecResult, reason: StopReason, *, at: datetime) -> RunOutcome:
    """The outcome of work stopped for ``reason``, with what it left (its exit, its output);
    it ended now, whenever its process did."""
    return outcome_for(replace(result, ended_at=None), reason, ended_at=at)


def internal_error(exc: Exception, *, at: datetime) -> RunOutcome:
    """The outcome of a run whose driving failed inside gatewayd."""
    return RunOutcome(
        status=RunStatus.FAILED,
        ended_at=at,
        error=f"internal error: {type(exc).__name__}: {exc}",
        error_kind=ErrorKind.INTERNAL,
    )


def interrupted(why: str, reason: StopReason, *, at: datetime) -> RunOutcome:
    """The outcome of a live run whose owner is gone: ``interrupted``, and why."""
    return RunOutcome(
        status=RunStatus.INTERRUPTED,
        ended_at=at,
        error=f"interrupted: {why}",
        error_kind=ErrorKind.INTERRUPTED,
        stop_reason=reason,
    )


def session_stop(outcome: RunOutcome) -> StopReason:
    """The ``stop_reason`` of the lifecycle ending of a run that ended with ``outcome``."""
    if outcome.status is RunStatus.SUCCEEDED:
        return StopReason.COMPLETED
    return outcome.stop_reason or _SESSION_STOPS.get(outcome.status, StopReason.ERROR)
