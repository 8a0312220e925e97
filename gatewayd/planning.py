"""Pure schedule maths: slots, stagger, time zones, catch-up and overlap decisions.

Nothing here does I/O or reads a clock: every function takes the time it needs.

Time zone rules for cron schedules (both are documented in the README):

* a local time that does not exist (the spring-forward gap) fires once, at the
  first instant after the gap;
* a local time that occurs twice (the fall-back fold) fires once, at its first
  occurrence.
"""

from __future__ import annotations

import collections
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from gatewayd import bounds
from gatewayd.durations import format_time
from gatewayd.errors import InvalidInput
from gatewayd.model import (
    Catchup,
    ErrorKind,
    Job,
    JobTiming,
    Overlap,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleKind,
    Trigger,
)
from gatewayd.settings import SCHEDULER

_CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_ONE_US = timedelta(microseconds=1)


# --- time zones and cron expressions -------------------------------------------------


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; :class:`InvalidInput` if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"tz: unknown time zone {name!r}; use an IANA name") from None


def _has_seconds(expr: str) -> bool:
    return len(expr.split()) == 6


@dataclass(frozen=True, slots=True, kw_only=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # the names of low, low + 1, ...
    extras: frozenset[str] = frozenset()  # what else the field may say: "?", "L", "W", "#"


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (
    _Field(name="minute", low=0, high=59),
    _Field(name="hour", low=0, high=23),
    _Field(name="day of month", low=1, high=31, extras=frozenset({"?", "L", "W"})),
    _Field(name="month", low=1, high=12, names=_MONTHS),
    _Field(name="day of week", low=0, high=7, names=_DAYS, extras=frozenset({"?", "#"})),
)
_SECONDS = _Field(name="second", low=0, high=59)


class _BadField(ValueError):
    """What is wrong with one field of a cron expression."""


def _field_value(text: str, field: _Field) -> int:
    lowered = text.lower()
    if lowered in field.names:
        return field.low + field.names.index(lowered)
    if not text.isdigit() or len(text) > 4:
        raise _BadField(
            f"{field.name} {text!r} is not a number"
            + (f" or a name ({field.names[0]}...)" if field.names else "")
        )
    value = int(text)
    if not field.low <= value <= field.high:
        raise _BadField(f"{field.name} {value} is out of range {field.low}-{field.high}")
    return value


def _check_item(item: str, field: _Field) -> None:
    """One comma-separated part of a field: ``*``, ``N``, ``A-B``, each with ``/STEP``."""
    base, slash, step = item.partition("/")
    if slash:
        span = field.high - field.low
        if not step.isdigit() or len(step) > 4 or not 1 <= int(step) <= span:
            raise _BadField(f"{field.name} step {step!r} must be from 1 to {span}")
    if base in ("*", "?"):
        if base == "?" and "?" not in field.extras:
            raise _BadField("'?' is only for the day of month or week")
        return
    if "#" in field.extras and "#" in base and not slash:
        day, _, nth = base.partition("#")
        _field_value(day, field)
        if nth not in ("1", "2", "3", "4", "5"):
            raise _BadField(f"{item!r}: the week after '#' is 1 to 5")
        return
    if "L" in field.extras and base.upper() == "L" and not slash:
        return
    if "W" in field.extras and base.upper().endswith("W") and not slash:
        _field_value(base[:-1], field)
        return
    first, dash, last = base.partition("-")
    start = _field_value(first, field)
    if dash:
        end = _field_value(last, field)
        if end < start:
            raise _BadField(
                f"{field.name} range {base!r} runs backwards; "
                f"write it from low to high (a range cannot wrap past {field.high})"
            )
        if end == start:
            raise _BadField(
                f"{field.name} range {base!r} starts and ends at {first}; write {first}"
            )


def validate_cron(expr: str) -> None:
    """Raise :class:`InvalidInput` naming the problem unless ``expr`` is a usable cron expression.

    Five fields (minute hour day month weekday), or six with a leading seconds
    field, or one of the ``@daily``-style aliases. Every number is checked
    against its field's range, every range runs from low to high and every step
    is at most the field's span; croniter then reads what passed.
    """
    text = expr.strip()
    fields = text.split()
    if text.startswith("@"):
        if text.lower() not in _CRON_ALIASES:
            raise InvalidInput(f"cron: unknown alias {expr!r}; use one of {sorted(_CRON_ALIASES)}")
        return
    if len(fields) not in (5, 6):
        raise InvalidInput(
            f"cron: {expr!r} has {len(fields)} fields; write 5 (minute hour day month weekday) "
            "or 6 with a leading seconds field"
        )
    kinds = (_SECONDS, *_FIELDS) if len(fields) == 6 else _FIELDS
    try:
        for field_text, field in zip(fields, kinds, strict=True):
            for item in field_text.split(","):
                if not item:
                    raise _BadField(f"an empty item in the {field.name}")
                _check_item(item, field)
    except _BadField as exc:
        raise InvalidInput(f"cron: invalid expression {expr!r}: {exc}") from None
    try:
        croniter(text, datetime(2026, 1, 1), second_at_beginning=_has_seconds(text))  # noqa: DTZ001
    except CroniterError as exc:
        raise InvalidInput(f"cron: invalid expression {expr!r}: {exc}") from None


def _local_to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock time in ``tz`` stands for, by the gap and fold rules."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    early = first.astimezone(UTC)
    if first.utcoffset() == second.utcoffset():
        return early
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early  # a fold: the first occurrence
    return _transition_instant(tz, second.astimezone(UTC), early)


def _transition_instant(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose offset is that of ``hi``: the end of a gap."""
    target = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _cron_next(expr: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    naive = after.astimezone(tz).replace(tzinfo=None, fold=0)
    it = croniter(expr, naive, second_at_beginning=_has_seconds(expr))
    while True:
        try:
            candidate: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            return None
        instant = _local_to_utc(candidate, tz)
        if instant > after:
            return instant


def _every_next(every_s: float, anchor: datetime, after: datetime) -> datetime:
    step_us = max(1, round(every_s * 1_000_000))
    elapsed_us = (after - anchor) // _ONE_US
    k = max(1, elapsed_us // step_us + 1)
    return anchor + timedelta(microseconds=k * step_us)


def next_slot(schedule: Schedule, after: datetime) -> datetime | None:
    """The first nominal slot strictly after ``after``, or ``None`` if there is none."""
    if schedule.kind is ScheduleKind.CRON:
        assert schedule.expr is not None
        return _cron_next(schedule.expr, zone(schedule.tz), after)
    if schedule.kind is ScheduleKind.EVERY:
        assert schedule.every_s is not None and schedule.anchor is not None
        # A job stored before the ranges were checked may hold any interval.
        every_s = min(schedule.every_s, bounds.EVERY.high)
        return _every_next(max(every_s, bounds.EVERY.low), schedule.anchor, after)
    assert schedule.at is not None
    return schedule.at if schedule.at > after else None


# --- stagger -------------------------------------------------------------------------


def stagger_offset(job_id: str, stagger_s: float) -> timedelta:
    """A deterministic offset in ``[0, stagger_s)``: a hash of the job id modulo the stagger."""
    span_us = round(min(stagger_s, bounds.STAGGER.high) * 1_000_000)
    if span_us <= 0:
        return timedelta(0)
    digest = hashlib.sha256(job_id.encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8], "big") % span_us)


def due_at(job: Job, slot: datetime) -> datetime:
    """When the scheduler fires ``slot`` of ``job``: the slot plus the job's stagger."""
    if job.schedule.kind is ScheduleKind.AT:
        return slot
    return slot + stagger_offset(job.id, job.stagger_s)


def timing_due_at(timing: JobTiming) -> datetime | None:
    """When a job will next fire, from its timing, or ``None`` if it will not."""
    if not timing.enabled or timing.next_slot is None:
        return None
    if timing.one_shot:
        return timing.next_slot
    return timing.next_slot + stagger_offset(timing.job_id, timing.stagger_s)


def next_run_at(job: Job) -> datetime | None:
    """When the job will next fire, or ``None`` if it will not (disabled or done)."""
    return timing_due_at(JobTiming.of(job))


def first_slot(job: Job, now: datetime) -> datetime | None:
    """The first slot a job (new, edited or re-enabled at ``now``) should handle."""
    if job.schedule.kind is ScheduleKind.AT:
        return job.schedule.at
    return next_slot(job.schedule, now - stagger_offset(job.id, job.stagger_s))


# --- the slots to come (``cron next``) ------------------------------------------------


class DstShift(enum.StrEnum):
    """How a daylight-saving change placed a cron slot (see the module docstring)."""

    GAP = "gap"  # its local time did not exist: it fires at the first instant after
    FOLD = "fold"  # its local time occurred twice: it fires at the first


@dataclass(frozen=True, slots=True, kw_only=True)
class Upcoming:
    """A slot still to come: its nominal time, when it fires (with the stagger), and
    how a daylight-saving change placed it."""

    slot: datetime
    at: datetime
    dst: DstShift | None


def dst_shift(schedule: Schedule, slot: datetime) -> DstShift | None:
    """Whether a daylight-saving change placed ``slot`` of a cron schedule (else ``None``)."""
    if schedule.kind is not ScheduleKind.CRON:
        return None
    assert schedule.expr is not None
    tz = zone(schedule.tz)
    naive = slot.astimezone(tz).replace(tzinfo=None)
    if not croniter.match(schedule.expr, naive, second_at_beginning=_has_seconds(schedule.expr)):
        return DstShift.GAP
    if naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset():
        return DstShift.FOLD
    return None


def upcoming(
    schedule: Schedule,
    *,
    count: int,
    after: datetime,
    first: datetime | None = None,
    stagger: timedelta = timedelta(0),
) -> list[Upcoming]:
    """The next ``count`` slots, walked as the timer walks them (:func:`next_slot` from
    each to the next): from ``first`` if given (a job's stored next slot, the one its
    timer fires next), else from the first slot that fires after ``after``.
    ``count`` must be within :data:`gatewayd.bounds.NEXT_SLOTS`, else InvalidInput."""
    bounds.NEXT_SLOTS.check(count, "count")
    slot = first if first is not None else next_slot(schedule, after - stagger)
    found: list[Upcoming] = []
    while slot is not None and len(found) < count:
        at = slot if schedule.kind is ScheduleKind.AT else slot + stagger
        found.append(Upcoming(slot=slot, at=at, dst=dst_shift(schedule, slot)))
        slot = next_slot(schedule, slot)
    return found


def job_upcoming(job: Job, *, count: int, now: datetime, after: datetime | None) -> list[Upcoming]:
    """The next ``count`` slots of ``job``: from its stored next slot, or after ``after``
    (none while it is disabled or paused: its timer fires nothing)."""
    if not job.enabled or job.paused is not None:
        bounds.NEXT_SLOTS.check(count, "count")
        return []
    stagger = stagger_offset(job.id, job.stagger_s)
    first = job.next_slot if after is None else None
    return upcoming(job.schedule, count=count, after=after or now, first=first, stagger=stagger)


# --- due slots and catch-up ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchupLimits:
    """Bounds on what one pass over a job's due slots may produce.

    ``grace_s``: a single slot handled within this long of its due time is an
    ordinary scheduled run, not a missed one. ``max_runs``: most catch-up runs
    for policy ``all``. ``max_records``: most missed slots recorded one by one;
    older ones are summarised in one ``skipped`` run. ``max_scan``: most slots
    enumerated inside the window.
    """

    grace_s: float = SCHEDULER.misfire_grace_s
    max_runs: int = SCHEDULER.catchup_max_runs
    max_records: int = 100
    max_scan: int = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotDecision:
    """What to record for one slot: a run (``skip is None``) or a ``skipped`` run."""

    scheduled_for: datetime
    trigger: Trigger
    skip: ErrorKind | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DuePlan:
    """The decisions for every due slot of a job, and the slot to handle after them."""

    decisions: tuple[SlotDecision, ...]
    next_slot: datetime | None

    @property
    def runs(self) -> tuple[SlotDecision, ...]:
        return tuple(d for d in self.decisions if d.skip is None)


def plan_due(job: Job, now: datetime, *, window_s: float, limits: CatchupLimits) -> DuePlan:
    """Decide what to record for the slots of ``job`` that are due at ``now``.

    A slot handled within ``grace_s`` of its due time is an ordinary ``schedule``
    run, however many others are due with it (after a stall of the timer, say):
    the pipeline decides each by the job's overlap policy, as if it had fired on
    time. Under ``replace`` only the last of them runs; the earlier ones are
    recorded ``skipped`` (overlap), superseded by it.

    A slot later than that is missed, and the job's catch-up policy decides:
    ``latest`` runs the latest missed slot inside the window, ``all`` runs up to
    ``max_runs`` of the latest ones, ``none`` runs nothing (ordinary slots after
    them meet the overlap policy behind these runs). Every missed slot that does not run is
    recorded as ``skipped`` with ``missed``: one by one up to ``max_records``,
    the rest summarised in one record.
    """
    first = job.next_slot
    if first is None or due_at(job, first) > now:
        return DuePlan(decisions=(), next_slot=first)
    offset = due_at(job, first) - first
    window_start = now - timedelta(seconds=min(window_s, bounds.CATCHUP_WINDOW.high))

    decisions: list[SlotDecision] = []
    slot: datetime | None = first
    if due_at(job, first) < window_start:
        slot = next_slot(job.schedule, window_start - offset - _ONE_US)
        decisions.append(
            SlotDecision(
                scheduled_for=first,
                trigger=Trigger.CATCHUP,
                skip=ErrorKind.MISSED,
                note=f"missed: slots from {format_time(first)} to before "
                f"{format_time(window_start)} were outside the catch-up window",
            )
        )
    scan = _scan_due(job, slot, now, offset=offset, limits=limits)
    grace = timedelta(seconds=limits.grace_s)
    ordinary = [t for t in scan.tail if now - due_at(job, t) <= grace]
    missed = scan.tail[: len(scan.tail) - len(ordinary)]
    decisions.extend(_missed(job, missed, scan, limits))
    decisions.extend(_ordinary(job, ordinary))
    return DuePlan(decisions=tuple(decisions), next_slot=scan.next_slot)


@dataclass(slots=True, kw_only=True)
class _Scan:
    """The due slots of a job, as far as they are enumerated: the latest kept, the rest counted."""

    tail: list[datetime]
    next_slot: datetime | None
    # Slots summarised in one record: how many, the first and the last of them.
    dropped: int = 0
    dropped_first: datetime | None = None
    dropped_last: datetime | None = None
    overflow: bool = False

    def drop(self, first: datetime, last: datetime, count: int = 1) -> None:
        self.dropped += count
        self.dropped_first = self.dropped_first or first
        self.dropped_last = last


def _scan_due(
    job: Job, slot: datetime | None, now: datetime, *, offset: timedelta, limits: CatchupLimits
) -> _Scan:
    """Walk the due slots from ``slot``: keep the latest ones a plan may name, count the rest."""
    keep = limits.max_records + limits.max_runs
    tail: collections.deque[datetime] = collections.deque(maxlen=keep)
    scan = _Scan(tail=[], next_slot=None)
    scanned = 0
    while slot is not None and due_at(job, slot) <= now and scanned < limits.max_scan:
        if len(tail) == keep:
            scan.drop(tail[0], tail[0])
        tail.append(slot)
        scanned += 1
        slot = next_slot(job.schedule, slot)
    if slot is not None and due_at(job, slot) <= now:
        # More slots than we may enumerate: the rest join the summary record.
        scan.overflow = True
        scan.drop(slot, now)
        slot = next_slot(job.schedule, now - offset)
    scan.tail = list(tail)
    scan.next_slot = slot
    return scan


def _missed(
    job: Job, missed: list[datetime], scan: _Scan, limits: CatchupLimits
) -> list[SlotDecision]:
    """The catch-up policy's decisions on the missed slots, oldest first."""
    if job.catchup is Catchup.LATEST:
        run_count = 1
    elif job.catchup is Catchup.ALL:
        run_count = limits.max_runs
    else:
        run_count = 0
    runs = missed[len(missed) - run_count :] if run_count else []
    skipped = missed[: len(missed) - len(runs)]
    if len(skipped) > limits.max_records:
        extra = len(skipped) - limits.max_records
        scan.drop(skipped[0], skipped[extra - 1], extra)
        skipped = skipped[extra:]
    decisions: list[SlotDecision] = []
    if scan.dropped and scan.dropped_first is not None and scan.dropped_last is not None:
        decisions.append(
            SlotDecision(
                scheduled_for=scan.dropped_first,
                trigger=Trigger.CATCHUP,
                skip=ErrorKind.MISSED,
                note=f"missed: {'at least ' if scan.overflow else ''}{scan.dropped} slots "
                f"from {format_time(scan.dropped_first)} "
                f"to {format_time(scan.dropped_last)}, recorded as this one run",
            )
        )
    decisions.extend(
        SlotDecision(
            scheduled_for=s,
            trigger=Trigger.CATCHUP,
            skip=ErrorKind.MISSED,
            note=f"missed: catch-up policy {job.catchup.value}",
        )
        for s in skipped
    )
    decisions.extend(SlotDecision(scheduled_for=s, trigger=Trigger.CATCHUP) for s in runs)
    return decisions


def _ordinary(job: Job, ordinary: list[datetime]) -> list[SlotDecision]:
    """The slots handled in time: each a run, or under ``replace`` only the last."""
    decisions: list[SlotDecision] = []
    if job.overlap is Overlap.REPLACE and len(ordinary) > 1:
        last = ordinary[-1]
        decisions.extend(
            SlotDecision(
                scheduled_for=s,
                trigger=Trigger.SCHEDULE,
                skip=ErrorKind.OVERLAP,
                note=f"skipped: superseded by the slot of {format_time(last)} "
                "(overlap replace), due at the same time",
            )
            for s in ordinary[:-1]
        )
        ordinary = [last]
    decisions.extend(SlotDecision(scheduled_for=s, trigger=Trigger.SCHEDULE) for s in ordinary)
    return decisions


# --- overlap and retry ---------------------------------------------------------------


class OverlapAction(enum.StrEnum):
    START = "start"
    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"


def needs_live_runs(policy: Overlap) -> bool:
    """Whether deciding a new run under ``policy`` looks at the job's live runs.

    ``allow`` decides nothing from them: its runs need neither read them nor wait
    for other decisions about the job.
    """
    return policy is not Overlap.ALLOW


def decide_overlap(policy: Overlap, live: Sequence[Run]) -> OverlapAction:
    """What to do with a new run of a job whose live (queued or running) runs are ``live``.

    ``skip`` refuses it; ``queue`` buffers at most one run behind the live ones;
    ``replace`` cancels the live runs first; ``allow`` starts it alongside.

    With none running, the first queued run is the one ahead, on its way to
    start (it may not be recorded running yet): the buffer is a queued run
    behind the ones ahead.
    """
    if not live or policy is Overlap.ALLOW:
        return OverlapAction.START
    if policy is Overlap.SKIP:
        return OverlapAction.SKIP
    if policy is Overlap.QUEUE:
        queued = sum(r.status is RunStatus.QUEUED for r in live)
        running = len(live) - queued
        waiting = queued if running else queued - 1
        return OverlapAction.SKIP if waiting > 0 else OverlapAction.QUEUE
    return OverlapAction.REPLACE


def retry_delay(policy: RetryPolicy, attempt: int) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` if no attempt is left."""
    if attempt >= policy.max_attempts:
        return None
    cap = min(policy.max_backoff_s, bounds.RETRY_MAX_BACKOFF.high)
    return float(min(policy.backoff_s * 2.0 ** (attempt - 1), cap))
