"""When alerts are raised, when a job pauses, and how delivery retries: pure functions.

A streak is the failed or timed-out runs of a job since its last success,
counted in the order the runs were queued; runs that neither succeeded nor
failed (skipped, cancelled, interrupted) neither count nor break it. Every
decision reads only recorded facts (the job's runs, its latest alert), so it
gives the same answer when it is made again after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gatewayd.alerting.values import (
    MAX_RETRY_DELAY_S,
    Alert,
    AlertAttempt,
    AlertReason,
    AlertState,
    SinkSpec,
    alert_id_of,
)
from gatewayd.durations import format_duration, format_time
from gatewayd.model import ErrorKind, Job, Run, RunStatus, StandingChange

FAILING = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
# The alerts whose order says whether a failure streak was alerted.
STREAK_REASONS = (AlertReason.FAILURE, AlertReason.RECOVERY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Raised:
    """An alert to raise, before it is addressed to the job's sinks."""

    key: str
    reason: AlertReason
    run_ids: tuple[str, ...]
    streak: int | None
    message: str
    raised_at: datetime


def failure_streak(runs: Sequence[Run]) -> list[Run]:
    """The failing runs since the last success, newest first, of ``runs`` (newest first)."""
    streak: list[Run] = []
    for run in runs:
        if run.status is RunStatus.SUCCEEDED:
            break
        if run.status in FAILING:
            streak.append(run)
    return streak


def _position(recent: Sequence[Run], run: Run) -> int | None:
    """Where ``run`` stands among the job's latest runs (0: the newest), if it does."""
    return next((i for i, r in enumerate(recent) if r.run_id == run.run_id), None)


def after_run(
    job: Job,
    run: Run,
    recent: Sequence[Run],
    last: Alert | None,
    last_missed: Alert | None = None,
) -> Raised | None:
    """The alert that ``run``'s ending raises, if any.

    ``recent`` is the job's latest runs, newest first, ``run`` among them;
    ``last`` the job's latest failure or recovery alert, ``last_missed`` its latest
    missed one: missed slots raise at most one alert per cooldown (a long outage
    records many at once).
    """
    if not job.alerts.sinks or run.ended_at is None:
        return None
    at = run.ended_at
    cooldown = timedelta(seconds=job.alerts.cooldown_s)
    if run.status is RunStatus.SKIPPED and run.error_kind is ErrorKind.MISSED:
        if last_missed is not None and at - last_missed.raised_at < cooldown:
            return None
        return Raised(
            key=f"missed:{run.run_id}",
            reason=AlertReason.MISSED,
            run_ids=(run.run_id,),
            streak=None,
            message=f"job {job.name!r}: {run.error or 'a slot was missed'}",
            raised_at=at,
        )
    index = _position(recent, run)
    if index is None:
        return None
    if run.status is RunStatus.SUCCEEDED:
        if last is None or last.reason is not AlertReason.FAILURE:
            return None
        ended = failure_streak(recent[index + 1 :])
        return Raised(
            key=f"recovery:{run.run_id}",
            reason=AlertReason.RECOVERY,
            run_ids=(run.run_id, *(r.run_id for r in ended)),
            streak=len(ended),
            message=f"job {job.name!r} succeeded again (run {run.run_id}) "
            f"after {len(ended)} failed runs in a row",
            raised_at=at,
        )
    if run.status not in FAILING:
        return None
    streak = failure_streak(recent[index:])
    if len(streak) < job.alerts.after:
        return None
    ids = tuple(r.run_id for r in streak)
    # A streak alerted already is alerted again only once the cooldown has passed.
    if (
        last is not None
        and last.reason is AlertReason.FAILURE
        and last.run_ids[0] in ids
        and at - last.raised_at < cooldown
    ):
        return None
    detail = run.error or run.status.value
    return Raised(
        key=f"failure:{run.run_id}",
        reason=AlertReason.FAILURE,
        run_ids=ids,
        streak=len(streak),
        message=f"job {job.name!r}: {len(streak)} failed run{'s' if len(streak) > 1 else ''} "
        f"in a row; the last, {run.run_id}, {run.status.value}: {detail}",
        raised_at=at,
    )


def pause_due(job: Job, run: Run, recent: Sequence[Run]) -> int | None:
    """How many failures in a row pause the job now that ``run`` ended, or ``None``."""
    if job.pause_after is None or not job.enabled or job.paused is not None:
        return None
    if run.status not in FAILING:
        return None
    index = _position(recent, run)
    if index != 0:
        return None  # a later run has ended since: it decides
    streak = len(failure_streak(recent))
    return streak if streak >= job.pause_after else None


def silence_start(job: Job, last_success: Run | None) -> datetime:
    """Since when the job is judged silent: its last success, else its creation, or its
    latest enabling or resumption if that came later."""
    start = job.created_at
    if last_success is not None and last_success.ended_at is not None:
        start = max(start, last_success.ended_at)
    for change in job.standing:
        if change.change in (StandingChange.ENABLED, StandingChange.RESUMED):
            start = max(start, change.at)
    return start


def silence_deadline(job: Job, last_success: Run | None) -> datetime | None:
    """When the dead-man's switch of ``job`` raises its alert, or ``None`` if it has none
    (or the job is disabled or paused, which is a silence it was told about)."""
    within = job.alerts.expect_success_within_s
    if within is None or not job.alerts.sinks or not job.enabled or job.paused is not None:
        return None
    return silence_start(job, last_success) + timedelta(seconds=within)


def silence(job: Job, last_success: Run | None, now: datetime) -> Raised | None:
    """The dead-man's switch: the alert of the job's current silence, once it is due."""
    deadline = silence_deadline(job, last_success)
    if deadline is None or now < deadline:
        return None
    start = silence_start(job, last_success)
    within = job.alerts.expect_success_within_s
    assert within is not None
    since = "it was created" if last_success is None else f"run {last_success.run_id}"
    return Raised(
        key=f"silence:{job.id}:{format_time(start)}",
        reason=AlertReason.SILENCE,
        run_ids=() if last_success is None else (last_success.run_id,),
        streak=None,
        message=f"job {job.name!r}: no successful run for {format_duration(within)} "
        f"(since {since}, at {format_time(start)})",
        raised_at=deadline,
    )


def addressed(raised: Raised, job: Job, *, host: str, instance: str) -> list[Alert]:
    """The alert to each of the job's sinks, pending, due at once."""
    return [
        Alert(
            alert_id=alert_id_of(raised.key, sink),
            key=raised.key,
            sink=sink,
            reason=raised.reason,
            job_id=job.id,
            job_name=job.name,
            run_ids=raised.run_ids,
            streak=raised.streak,
            message=raised.message,
            raised_at=raised.raised_at,
            host=host,
            instance=instance,
            next_attempt_at=raised.raised_at,
        )
        for sink in job.alerts.sinks
    ]


def retry_delay(sink: SinkSpec, attempt: int) -> float:
    """Seconds from failed attempt ``attempt`` (from 1) to the next: doubling, capped."""
    return float(min(sink.retry_backoff_s * 2 ** min(attempt - 1, 32), MAX_RETRY_DELAY_S))


def attempted(alert: Alert, sink: SinkSpec | None, attempt: AlertAttempt) -> Alert:
    """The alert after ``attempt``: delivered, pending its next try, or failed after
    the sink's last attempt (a sink no longer configured gets no other)."""
    attempts = (*alert.attempts, attempt)
    if attempt.error is None:
        return replace(
            alert,
            attempts=attempts,
            state=AlertState.DELIVERED,
            delivered_at=attempt.at,
            next_attempt_at=None,
        )
    if sink is None or len(attempts) >= sink.max_attempts:
        return replace(alert, attempts=attempts, state=AlertState.FAILED, next_attempt_at=None)
    ended = attempt.at + timedelta(milliseconds=attempt.duration_ms)
    delay = timedelta(seconds=retry_delay(sink, len(attempts)))
    return replace(alert, attempts=attempts, next_attempt_at=ended + delay)
