"""The run state machine as pure functions, shared by every store.

A store calls these inside its transaction, so that every backend refuses the
same transitions with the same errors.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from gatewayd.errors import Conflict, RunAlreadyEnded
from gatewayd.model import Run, RunOutcome, RunStatus, Trigger, elapsed_ms


def slot_key(run: Run) -> tuple[str, datetime] | None:
    """The slot a run claims: ``(job_id, scheduled_for)``, unless it is a retry or has none."""
    if run.scheduled_for is None or run.trigger is Trigger.RETRY:
        return None
    return (run.job_id, run.scheduled_for)


def started(
    run: Run, *, started_at: datetime, owner: str, pid: int | None, pid_start: int | None
) -> Run:
    """``run`` moved from ``queued`` to ``running``."""
    if run.status is not RunStatus.QUEUED:
        raise RunAlreadyEnded(
            f"run {run.run_id} is {run.status.value}, not queued: it cannot start",
            data={"status": run.status.value},
        )
    return dataclasses.replace(
        run,
        status=RunStatus.RUNNING,
        started_at=started_at,
        owner=owner,
        pid=pid,
        pid_start=pid_start,
    )


def adopted(run: Run, *, from_owner: str | None, to_owner: str) -> Run:
    """``run``, still live, now owned by ``to_owner`` instead of ``from_owner``."""
    if run.status.is_terminal:
        raise RunAlreadyEnded(
            f"run {run.run_id} already ended {run.status.value}; it cannot be adopted",
            data={"status": run.status.value},
        )
    if run.owner != from_owner:
        raise Conflict(
            f"run {run.run_id} is owned by instance {run.owner}, not {from_owner}; "
            "another instance adopted it first"
        )
    return dataclasses.replace(run, owner=to_owner)


def nothing_to_cancel(run: Run) -> RunAlreadyEnded:
    """The error for a cancel of a run that has already ended."""
    return RunAlreadyEnded(
        f"run {run.run_id} already ended {run.status.value}; there is nothing to cancel",
        data={"status": run.status.value},
    )


def finished(run: Run, outcome: RunOutcome) -> Run:
    """``run`` with its one terminal status."""
    if run.status.is_terminal:
        raise RunAlreadyEnded(
            f"run {run.run_id} already ended {run.status.value}",
            data={"status": run.status.value},
        )
    duration_ms = None
    if run.started_at is not None:
        duration_ms = elapsed_ms(run.started_at, outcome.ended_at)
    return dataclasses.replace(
        run,
        status=outcome.status,
        ended_at=outcome.ended_at,
        duration_ms=duration_ms,
        exit_code=outcome.exit_code,
        error=outcome.error,
        error_kind=outcome.error_kind,
        stop_reason=outcome.stop_reason,
        summary=outcome.summary,
        output_tail=outcome.output_tail,
        leftovers=outcome.leftovers,
    )
