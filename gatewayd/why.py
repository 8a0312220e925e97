"""``cron why``: what became of each of a job's slots, from recorded facts only.

Every slot the job's schedule names since a time is matched with its run, if
it has one: ran (with the run's status), still live, skipped for overlap (with
the run that held it), or recorded missed (with when no instance was alive,
from the instances' recorded lifetimes, and what the catch-up policy did). A
slot without a run is explained by the job's recorded standing (disabled,
paused), or said to be due, or to have no record. Manual runs and retries are
shown among the slots, by their time. It ends with the next slot and what
stops it, if anything does. Pure: the caller reads the facts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gatewayd.durations import format_time
from gatewayd.model import (
    ErrorKind,
    Instance,
    Job,
    Overlap,
    Run,
    RunStatus,
    Standing,
    StandingChange,
    Trigger,
)
from gatewayd.planning import Upcoming, due_at, job_upcoming, next_slot


class Fate(enum.StrEnum):
    """What became of a slot (or of a manual run or a retry)."""

    RAN = "ran"
    LIVE = "live"  # its run is queued or running
    SKIPPED = "skipped"  # for overlap: another run of the job was live
    MISSED = "missed"  # recorded missed (no instance fired it in time)
    DISABLED = "disabled"  # no run: the job was disabled
    PAUSED = "paused"  # no run: the job was paused after failures
    RETRY_PENDING = "retry_pending"  # a retry queued for a later time
    DUE = "due"  # due, not handled yet
    NO_RECORD = "no_record"  # no run, and no recorded fact says why


class EntryKind(enum.StrEnum):
    SLOT = "slot"
    MANUAL = "manual"
    RETRY = "retry"


@dataclass(frozen=True, slots=True, kw_only=True)
class Absence:
    """A time no instance was alive: from the last one's end (``None``: none had lived
    yet) until the next one's start (``None``: none has started since)."""

    since: datetime | None
    until: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of the timeline."""

    kind: EntryKind
    slot: datetime | None  # the nominal slot (none for a manual run)
    at: datetime  # when it fired, or was due (the slot with the stagger), or was asked for
    fate: Fate
    run: Run | None = None
    detail: str
    held_by: str | None = None  # the live run an overlap skip gave way to
    absence: Absence | None = None  # for a missed slot


@dataclass(frozen=True, slots=True, kw_only=True)
class Why:
    job: Job
    since: datetime
    now: datetime
    entries: tuple[Entry, ...]
    truncated: bool  # more slots than were shown (the oldest were left out)
    next: Upcoming | None
    blocked: Standing | None  # the pause or the disabling that stops the job's slots
    summary: str


# A scheduled run that started this late is said to have.
_LATE_S = 1.0
_HOLDER = re.compile(r"run (\S+) of the job is still live")
_SUMMARISED = ("recorded as this one run", "outside the catch-up window")


def _to_ms(when: datetime) -> int:
    """A slot to the millisecond. Jobs made before anchors were cut to the millisecond
    (see jobspec) ran slots that differ from the ones walked from their stored spec by
    up to one: slots are matched within it."""
    return int(when.timestamp() * 1000)


def _time_of(run: Run) -> datetime:
    return run.scheduled_for or run.queued_at


def lifetimes(instances: Sequence[Instance], now: datetime) -> list[tuple[datetime, datetime]]:
    """When each instance was alive, by the store's records: from its start until its
    lease ran out (or now, for one still alive), earliest first."""
    spans = []
    for instance in instances:
        if instance.lives_at(now):
            end = now
        else:
            end = instance.lease_until or instance.heartbeat_at or instance.started_at
        spans.append((instance.started_at, max(end, instance.started_at)))
    return sorted(spans)


def absence_at(spans: Sequence[tuple[datetime, datetime]], when: datetime) -> Absence | None:
    """The time around ``when`` with no instance alive, or ``None`` if one was."""
    if any(start <= when <= end for start, end in spans):
        return None
    before = [end for _, end in spans if end < when]
    after = [start for start, _ in spans if start > when]
    return Absence(since=max(before, default=None), until=min(after, default=None))


def _absence_text(absence: Absence | None) -> str:
    if absence is None:
        return "an instance was alive, but did not fire it in time"
    since = format_time(absence.since) if absence.since else "the first record"
    until = format_time(absence.until) if absence.until else "now"
    return f"no instance was alive from {since} to {until}"


def standing_at(job: Job, when: datetime) -> Standing | None:
    """The latest change of the job's standing at or before ``when``."""
    found = None
    for change in job.standing:
        if change.at <= when:
            found = change
    return found


def _by(change: Standing) -> str:
    return "the pause rule" if change.by is None else f"the {change.by.value}"


def _unrun(job: Job, slot: datetime, at: datetime, now: datetime, grace: timedelta) -> Entry:
    """A slot with no run: why, as far as the record says (a change within the grace
    after the slot came before the timer, which may fire that late, fired it)."""
    change = standing_at(job, at + grace)
    if change is not None and change.change is StandingChange.DISABLED:
        return Entry(
            kind=EntryKind.SLOT,
            slot=slot,
            at=at,
            fate=Fate.DISABLED,
            detail=f"the job was disabled at {format_time(change.at)} by {_by(change)}",
        )
    if change is not None and change.change is StandingChange.PAUSED:
        return Entry(
            kind=EntryKind.SLOT,
            slot=slot,
            at=at,
            fate=Fate.PAUSED,
            detail=f"the job was paused at {format_time(change.at)} after "
            f"{change.failures} failures in a row (run {change.run_id})",
        )
    if not job.enabled and change is None:
        return Entry(
            kind=EntryKind.SLOT,
            slot=slot,
            at=at,
            fate=Fate.DISABLED,
            detail="the job is disabled (since before its changes were recorded)",
        )
    if at > now - grace:
        return Entry(kind=EntryKind.SLOT, slot=slot, at=at, fate=Fate.DUE, detail="due now")
    detail = "no run is recorded for it"
    if slot < job.updated_at:
        detail += f" (the job was changed at {format_time(job.updated_at)}: its schedule may have)"
    return Entry(kind=EntryKind.SLOT, slot=slot, at=at, fate=Fate.NO_RECORD, detail=detail)


def _of_run(job: Job, run: Run, spans: Sequence[tuple[datetime, datetime]], now: datetime) -> Entry:
    kind = {Trigger.MANUAL: EntryKind.MANUAL, Trigger.RETRY: EntryKind.RETRY}.get(
        run.trigger, EntryKind.SLOT
    )
    slot = None if kind is EntryKind.MANUAL else run.scheduled_for
    due = due_at(job, slot) if slot is not None else run.queued_at
    at = run.started_at or due

    def made(
        fate: Fate, detail: str, *, held_by: str | None = None, absence: Absence | None = None
    ) -> Entry:
        return Entry(
            kind=kind,
            slot=slot,
            at=at,
            run=run,
            fate=fate,
            detail=detail,
            held_by=held_by,
            absence=absence,
        )

    if run.status is RunStatus.SKIPPED and run.error_kind is ErrorKind.OVERLAP:
        holder = _HOLDER.search(run.error or "")
        return made(
            Fate.SKIPPED,
            run.error or "skipped for overlap",
            held_by=holder.group(1) if holder else None,
        )
    if run.status is RunStatus.SKIPPED and run.error_kind is ErrorKind.MISSED:
        absence = absence_at(spans, due)
        return made(
            Fate.MISSED, f"{run.error or 'missed'}; {_absence_text(absence)}", absence=absence
        )
    if run.status.is_live:
        if run.trigger is Trigger.RETRY and run.scheduled_for and run.scheduled_for > now:
            when = format_time(run.scheduled_for)
            return made(Fate.RETRY_PENDING, f"attempt {run.attempt} is queued for {when}")
        return made(Fate.LIVE, f"{run.status.value} now")
    detail = run.status.value if not run.error else f"{run.status.value}: {run.error}"
    if run.trigger is Trigger.CATCHUP:
        absence = absence_at(spans, due)
        detail = f"run late, by the catch-up policy {job.catchup.value}; {detail}"
        if absence is not None:
            detail += f"; {_absence_text(absence)}"
        return made(Fate.RAN, detail, absence=absence)
    if run.started_at is not None and run.trigger is Trigger.SCHEDULE:
        late = (run.started_at - due).total_seconds()
        if late >= _LATE_S:
            detail += f"; started {late:.1f}s after its slot, within the misfire grace"
            absence = absence_at(spans, due)
            if absence is not None:
                detail += f" ({_absence_text(absence)})"
            return made(Fate.RAN, detail, absence=absence)
    return made(Fate.RAN, detail)


def _summarised(runs: Sequence[Run], slot: datetime) -> Run | None:
    """A missed run that stands for many slots, ``slot`` among them."""
    for index, run in enumerate(runs):
        if (
            run.error_kind is ErrorKind.MISSED
            and run.scheduled_for is not None
            and run.scheduled_for < slot
            and any(mark in (run.error or "") for mark in _SUMMARISED)
        ):
            later = [r.scheduled_for for r in runs[index + 1 :] if r.scheduled_for is not None]
            if not later or min(later) > slot:
                return run
    return None


def _walk_start(job: Job, since: datetime, now: datetime, most: int) -> datetime:
    """Where to start walking the schedule so that about ``most`` slots are left before
    ``now``: ``since``, unless the schedule is so dense that the first ``most`` slots
    from it end early; then as much later as they spanned (only the latest are kept)."""
    slot = next_slot(job.schedule, since - timedelta(microseconds=1))
    for _ in range(most):
        if slot is None or due_at(job, slot) > now:
            return since
        slot = next_slot(job.schedule, slot)
    if slot is None or due_at(job, slot) > now:
        return since
    return max(since, now - (slot - since))


def explain(
    job: Job,
    *,
    runs: Sequence[Run],
    instances: Sequence[Instance],
    since: datetime,
    now: datetime,
    grace_s: float,
    most: int,
) -> Why:
    """The timeline of ``job`` from ``since`` to ``now``: at most ``most`` entries, the
    latest kept. ``runs`` are the job's runs of that time (any order); ``grace_s`` how
    late the timer may fire a slot before it is recorded missed."""
    spans = lifetimes(instances, now)
    grace = timedelta(seconds=grace_s)
    in_window = sorted((r for r in runs if _time_of(r) >= since), key=_time_of)
    slotted = {
        _to_ms(r.scheduled_for)
        for r in in_window
        if r.trigger in (Trigger.SCHEDULE, Trigger.CATCHUP) and r.scheduled_for is not None
    }
    entries = [_of_run(job, r, spans, now) for r in in_window]
    start = _walk_start(job, max(since, job.created_at), now, most)
    truncated = start > max(since, job.created_at)
    slot = next_slot(job.schedule, start - timedelta(microseconds=1))
    while slot is not None and due_at(job, slot) <= now:
        if not {_to_ms(slot) - 1, _to_ms(slot), _to_ms(slot) + 1} & slotted:
            summary = _summarised(in_window, slot)
            if summary is None:
                entries.append(_unrun(job, slot, due_at(job, slot), now, grace))
        slot = next_slot(job.schedule, slot)
    entries.sort(key=lambda e: (e.at, e.slot or e.at))
    if len(entries) > most:
        entries = entries[-most:]
        truncated = True
    upcoming = job_upcoming(job, count=1, now=now, after=None)
    blocked = job.paused or job.disabled
    return Why(
        job=job,
        since=since,
        now=now,
        entries=tuple(entries),
        truncated=truncated,
        next=upcoming[0] if upcoming else None,
        blocked=blocked,
        summary=_summary(job, upcoming[0] if upcoming else None, runs),
    )


def _summary(job: Job, upcoming: Upcoming | None, runs: Sequence[Run]) -> str:
    pause = job.paused
    if pause is not None:
        return (
            f"paused after {pause.failures} failures in a row since {format_time(pause.at)} "
            f"(run {pause.run_id}): no slot fires until `gatewayd cron enable {job.name}`"
        )
    if not job.enabled:
        change = job.disabled
        since = "" if change is None else f" since {format_time(change.at)} by {_by(change)}"
        return f"disabled{since}: no slot fires until `gatewayd cron enable {job.name}`"
    if upcoming is None:
        return "no slot is left: the schedule names none after its last"
    text = f"the next slot fires at {format_time(upcoming.at)}"
    live = [r for r in runs if r.status is RunStatus.RUNNING]
    if live and job.overlap is Overlap.SKIP:
        return (
            f"{text}, unless run {live[0].run_id}, live now, still is then "
            "(overlap skip records the slot skipped)"
        )
    return f"{text}; nothing stops it"


def since_default(now: datetime) -> datetime:
    return now - timedelta(days=1)
