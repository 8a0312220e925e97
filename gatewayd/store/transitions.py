"""The run state machine as pure functions, shared by every store.

A store calls these inside its transaction, so that every backend refuses the
same transitions with the same errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime

from gatewayd.errors import ClaimLost, Conflict, LeaseLost, RunAlreadyEnded, StaleDecision
from gatewayd.model import (
    InstanceState,
    Run,
    RunOutcome,
    RunStatus,
    StopReason,
    Trigger,
    elapsed_ms,
)


def slot_key(run: Run) -> tuple[str, datetime] | None:
    """The slot a run claims: ``(job_id, scheduled_for)``, unless it is a retry or has none."""
    if run.scheduled_for is None or run.trigger is Trigger.RETRY:
        return None
    return (run.job_id, run.scheduled_for)


def check_holder(instance_id: str | None, state: InstanceState | None) -> None:
    """Refuse a write about runs owned by ``instance_id`` if it was taken over.

    The fence of every write that acts on a claim (a run's record, its start,
    adoption and ending): ``state`` is the owner's, read in the write's
    transaction (``None``: no such instance is recorded). An instance taken over
    owns nothing any more; whatever it writes late is refused, so that it can
    never undo what its successor settled.
    """
    if instance_id is not None and state is InstanceState.GONE:
        raise LeaseLost(
            f"instance {instance_id} was taken over by another instance (its lease "
            "lapsed): it owns no run any more, and this write was refused",
            data={"instance_id": instance_id},
        )


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


def starting(
    *,
    started_at: datetime,
    owner: str,
    pid: int | None,
    pid_start: int | None,
    outcome: RunOutcome | None,
) -> Callable[[Run], Run]:
    """The change of ``Store.start_run``: a run started and, with ``outcome``, ended too."""

    def change(run: Run) -> Run:
        run = started(run, started_at=started_at, owner=owner, pid=pid, pid_start=pid_start)
        return run if outcome is None else finished(run, outcome)

    return change


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


def cancel_asked(run: Run, reason: StopReason) -> Run:
    """``run``, still live, with a stop asked of its owner (the first reason asked stays)."""
    if run.status.is_terminal:
        raise nothing_to_cancel(run)
    if run.cancel_requested is not None:
        return run
    return dataclasses.replace(run, cancel_requested=reason)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What a decision about a job's new runs was made on, for the store to check.

    ``live``: the ids of the job's live runs it saw (``None``: the decision did not
    look at them, as under overlap ``allow``). ``next_slot``: the job's next slot
    it saw, if it advances the slot (compare-and-set). ``claim``: the instance
    whose claim on the job's due slot the decision was made under (see
    :meth:`Store.claim_due`), which must still hold it.
    """

    live: frozenset[str] | None = None
    next_slot: datetime | None = None
    claim: str | None = None


def check_expected(
    job_id: str,
    expected: Expected,
    *,
    live_now: Iterable[str],
    next_slot_now: datetime | None,
    advances: bool,
    claim_now: str | None = None,
) -> None:
    """Raise :class:`StaleDecision` unless the job is as the decision saw it, and
    :class:`ClaimLost` unless ``claim_now`` (the holder of an unlapsed claim on the
    job) is the decision's claim. A store that does not claim passes the
    decision's own."""
    if expected.claim is not None and claim_now != expected.claim:
        raise ClaimLost(
            f"the claim of instance {expected.claim} on job {job_id}'s slot lapsed "
            f"(held now by {claim_now or 'nobody'})",
            data={"job_id": job_id},
        )
    if expected.live is not None:
        now = frozenset(live_now)
        if now != expected.live:
            raise StaleDecision(
                f"job {job_id}'s live runs changed while its new runs were decided "
                f"(now {sorted(now)}, decided on {sorted(expected.live)})",
                data={"job_id": job_id},
            )
    if advances and next_slot_now != expected.next_slot:
        raise StaleDecision(
            f"job {job_id}'s next slot was advanced by another timer "
            f"(now {next_slot_now}, decided on {expected.next_slot})",
            data={"job_id": job_id},
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


def ending_problems(run: Run) -> list[str]:
    """How a run's status, ``started_at`` and ``ended_at`` disagree (none, for a true record)."""
    problems = []
    if run.status.is_live and run.ended_at is not None:
        problems.append("is live but has ended_at")
    if run.status is RunStatus.RUNNING and run.started_at is None:
        problems.append("is running but never started")
    if run.status is RunStatus.QUEUED and run.started_at is not None:
        problems.append("is queued but has started")
    if run.status.is_terminal and run.ended_at is None:
        problems.append("has ended without ended_at")
    if run.ended_at is not None and run.started_at is not None and run.ended_at < run.started_at:
        problems.append("ended before it started")
    return problems
