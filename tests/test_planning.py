"""Pure schedule maths: slots, time zones, DST, stagger, catch-up and overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gatewayd.errors import InvalidInput
from gatewayd.model import (
    Catchup,
    ErrorKind,
    ExecPayload,
    Job,
    Overlap,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleKind,
    Trigger,
)
from gatewayd.planning import (
    CatchupLimits,
    OverlapAction,
    decide_overlap,
    due_at,
    first_slot,
    needs_live_runs,
    next_slot,
    plan_due,
    retry_delay,
    stagger_offset,
    validate_cron,
    zone,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC") -> Schedule:
    return Schedule(kind=ScheduleKind.CRON, expr=expr, tz=tz)


def slots(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    found = []
    current = next_slot(schedule, after)
    while current is not None and current <= until:
        found.append(current)
        current = next_slot(schedule, current)
    return found


def make_job(schedule: Schedule, **kw: object) -> Job:
    defaults: dict[str, object] = {
        "id": "job0000001",
        "name": "j",
        "schedule": schedule,
        "payload": ExecPayload(command="true"),
        "created_at": T0,
        "updated_at": T0,
    }
    defaults.update(kw)
    return Job(**defaults)  # type: ignore[arg-type]


class TestCron:
    """Cron slots: the next matching instant strictly after a time, in the job's zone."""

    def test_five_fields_in_utc(self) -> None:
        """A 5-field expression fires on whole minutes, strictly after `after`."""
        s = cron("*/15 * * * *")
        assert next_slot(s, utc(2026, 5, 1, 10, 0)) == utc(2026, 5, 1, 10, 15)
        assert next_slot(s, utc(2026, 5, 1, 10, 7, 30)) == utc(2026, 5, 1, 10, 15)

    def test_leading_seconds_field(self) -> None:
        """Six fields put seconds first: */10 fires every ten seconds."""
        s = cron("*/10 * * * * *")
        assert slots(s, utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 10, 0, 30)) == [
            utc(2026, 5, 1, 10, 0, 10),
            utc(2026, 5, 1, 10, 0, 20),
            utc(2026, 5, 1, 10, 0, 30),
        ]

    def test_time_zone(self) -> None:
        """09:00 in Tokyo is 00:00 UTC."""
        s = cron("0 9 * * *", "Asia/Tokyo")
        assert next_slot(s, utc(2026, 5, 1, 1, 0)) == utc(2026, 5, 2, 0, 0)

    @pytest.mark.parametrize(
        ("expr", "problem"),
        [
            ("61 * * * *", "out of range"),
            ("* * * *", "4 fields"),
            ("* * * * * * *", "7 fields"),
            ("@reboot", "unknown alias"),
            ("a b c d e", "invalid expression"),
        ],
    )
    def test_bad_expressions_are_named(self, expr: str, problem: str) -> None:
        """A malformed expression is refused with a message naming the problem."""
        with pytest.raises(InvalidInput, match=problem):
            validate_cron(expr)

    def test_unknown_zone(self) -> None:
        """An unknown IANA zone is refused by name."""
        with pytest.raises(InvalidInput, match="unknown time zone 'Mars/Olympus'"):
            zone("Mars/Olympus")


class TestDaylightSaving:
    """DST: a missing local time fires once after the gap; a repeated one fires once, first."""

    def test_new_york_spring_forward_daily(self) -> None:
        """02:30 does not exist on 2026-03-08 in New York: it fires at 03:00 EDT, once."""
        s = cron("30 2 * * *", "America/New_York")
        got = slots(s, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
        assert got == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]

    def test_new_york_spring_forward_many_times_in_the_gap(self) -> None:
        """Four slots inside the gap become one fire, at the first instant after it."""
        s = cron("*/15 2 * * *", "America/New_York")
        got = slots(s, utc(2026, 3, 8, 0), utc(2026, 3, 8, 23))
        assert got == [utc(2026, 3, 8, 7, 0)]

    def test_new_york_spring_forward_hourly(self) -> None:
        """Hourly around the gap: 01:00 EST, 03:00 EDT, 04:00 EDT, never twice at 03:00."""
        s = cron("0 * * * *", "America/New_York")
        got = slots(s, utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8, 30))
        assert got == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]

    def test_new_york_fall_back(self) -> None:
        """01:30 happens twice on 2026-11-01 in New York: it fires at the first (EDT) only."""
        s = cron("30 1 * * *", "America/New_York")
        got = slots(s, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
        assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]

    def test_new_york_fall_back_hourly(self) -> None:
        """Hourly across the fold: 01:00 EDT fires, 01:00 EST does not, 02:00 EST does."""
        s = cron("0 * * * *", "America/New_York")
        got = slots(s, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7, 30))
        assert got == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)]

    def test_berlin_spring_forward(self) -> None:
        """02:30 does not exist on 2026-03-29 in Berlin: it fires at 03:00 CEST (01:00 UTC)."""
        s = cron("30 2 * * *", "Europe/Berlin")
        got = slots(s, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
        assert got == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]

    def test_berlin_fall_back(self) -> None:
        """02:30 happens twice on 2026-10-25 in Berlin: it fires at 02:30 CEST only."""
        s = cron("30 2 * * *", "Europe/Berlin")
        got = slots(s, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
        assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]

    def test_berlin_fall_back_every_minute_never_repeats(self) -> None:
        """Every-minute slots across the fold are strictly increasing and never repeat."""
        s = cron("* * * * *", "Europe/Berlin")
        got = slots(s, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30))
        assert got == sorted(set(got))
        # 00:00Z..00:59Z is 02:00..02:59 CEST; 01:00Z..01:59Z repeats 02:xx as CET and is skipped.
        assert utc(2026, 10, 25, 0, 59) in got
        assert all(not (utc(2026, 10, 25, 1) <= t < utc(2026, 10, 25, 2)) for t in got)


class TestEveryAndAt:
    """Interval and one-shot schedules."""

    def test_every_counts_from_its_anchor(self) -> None:
        """Slots are anchor + k * every for k >= 1, whatever `after` is."""
        s = Schedule(kind=ScheduleKind.EVERY, every_s=90, anchor=T0)
        assert next_slot(s, T0) == T0 + timedelta(seconds=90)
        assert next_slot(s, T0 + timedelta(seconds=100)) == T0 + timedelta(seconds=180)
        assert next_slot(s, T0 + timedelta(seconds=180)) == T0 + timedelta(seconds=270)

    def test_at_fires_once(self) -> None:
        """A one-shot slot exists only before it has passed."""
        when = utc(2026, 6, 1, 9)
        s = Schedule(kind=ScheduleKind.AT, at=when)
        assert next_slot(s, when - timedelta(seconds=1)) == when
        assert next_slot(s, when) is None


class TestStagger:
    """Stagger: a deterministic offset per job, inside the stagger window."""

    def test_stable_from_one_run_to_the_next(self) -> None:
        """The same job id gets the same offset every time, in [0, stagger)."""
        first = stagger_offset("k3x9f2m1qa", 300)
        assert all(stagger_offset("k3x9f2m1qa", 300) == first for _ in range(100))
        assert timedelta(0) <= first < timedelta(seconds=300)

    def test_spreads_jobs(self) -> None:
        """Many jobs on one schedule get many different offsets."""
        offsets = {stagger_offset(f"job{i:07d}", 60) for i in range(200)}
        assert len(offsets) > 150

    def test_applies_to_every_slot(self) -> None:
        """A staggered job fires at each slot plus its offset; the slot itself is unchanged."""
        job = make_job(cron("0 * * * *"), stagger_s=600)
        offset = stagger_offset(job.id, 600)
        slot = utc(2026, 5, 1, 10)
        assert due_at(job, slot) == slot + offset
        assert first_slot(job, slot - timedelta(minutes=1)) == slot

    def test_zero_stagger(self) -> None:
        assert stagger_offset("anything", 0) == timedelta(0)


def every_job(every_s: float, *, next_slot_at: datetime, **kw: object) -> Job:
    return make_job(
        Schedule(kind=ScheduleKind.EVERY, every_s=every_s, anchor=T0), next_slot=next_slot_at, **kw
    )


class TestPlanDue:
    """What gets recorded for due slots: never a burst beyond the policy, never a silent skip."""

    limits = CatchupLimits(grace_s=5, max_runs=3, max_records=5)
    # For the catch-up policies: every slot of these tests is later than its grace.
    late = CatchupLimits(grace_s=0.25, max_runs=3, max_records=5)

    def test_nothing_due(self) -> None:
        job = every_job(60, next_slot_at=T0 + timedelta(seconds=60))
        plan = plan_due(job, T0 + timedelta(seconds=59), window_s=3600, limits=self.limits)
        assert plan.decisions == ()
        assert plan.next_slot == T0 + timedelta(seconds=60)

    def test_one_slot_on_time_is_a_scheduled_run(self) -> None:
        job = every_job(60, next_slot_at=T0 + timedelta(seconds=60))
        plan = plan_due(job, T0 + timedelta(seconds=61), window_s=3600, limits=self.limits)
        assert [(d.trigger, d.skip) for d in plan.decisions] == [(Trigger.SCHEDULE, None)]
        assert plan.next_slot == T0 + timedelta(seconds=120)

    def test_latest_runs_one_catchup_and_records_the_rest_skipped(self) -> None:
        """I7: three missed slots under `latest` give two skipped (missed) and one catch-up run."""
        job = every_job(2, next_slot_at=T0 + timedelta(seconds=2))
        plan = plan_due(job, T0 + timedelta(seconds=7), window_s=3600, limits=self.late)
        assert [d.skip for d in plan.decisions] == [ErrorKind.MISSED, ErrorKind.MISSED, None]
        assert plan.runs[0].trigger is Trigger.CATCHUP
        assert plan.runs[0].scheduled_for == T0 + timedelta(seconds=6)
        assert plan.next_slot == T0 + timedelta(seconds=8)

    def test_all_is_bounded(self) -> None:
        """`all` replays the latest max_runs slots; older ones are recorded skipped."""
        job = every_job(1, next_slot_at=T0 + timedelta(seconds=1), catchup=Catchup.ALL)
        plan = plan_due(job, T0 + timedelta(seconds=7.5), window_s=3600, limits=self.late)
        assert [d.scheduled_for.second for d in plan.runs] == [5, 6, 7]
        assert len([d for d in plan.decisions if d.skip]) == 4

    def test_none_records_every_missed_slot(self) -> None:
        job = every_job(2, next_slot_at=T0 + timedelta(seconds=2), catchup=Catchup.NONE)
        plan = plan_due(job, T0 + timedelta(seconds=7), window_s=3600, limits=self.late)
        assert plan.runs == ()
        assert [d.scheduled_for.second for d in plan.decisions] == [2, 4, 6]
        assert {d.skip for d in plan.decisions} == {ErrorKind.MISSED}

    def test_many_missed_slots_are_summarised(self) -> None:
        """Past max_records, older missed slots are recorded as one summary run, with a count."""
        job = every_job(1, next_slot_at=T0 + timedelta(seconds=1))
        plan = plan_due(job, T0 + timedelta(seconds=20.5), window_s=3600, limits=self.late)
        skipped = [d for d in plan.decisions if d.skip]
        assert len(skipped) == 6
        assert skipped[0].note is not None and "missed: 14 slots" in skipped[0].note
        assert len(plan.runs) == 1

    def test_slots_outside_the_window_are_not_run(self) -> None:
        """A slot older than the catch-up window is recorded missed, never run."""
        job = every_job(60, next_slot_at=T0 + timedelta(seconds=60))
        plan = plan_due(job, T0 + timedelta(hours=5, seconds=30), window_s=3600, limits=self.limits)
        assert plan.decisions[0].skip is ErrorKind.MISSED
        assert plan.decisions[0].note is not None and "outside the catch-up window" in (
            plan.decisions[0].note
        )
        assert [d.scheduled_for for d in plan.runs] == [T0 + timedelta(hours=5)]

    def test_slots_within_the_grace_are_ordinary_runs_after_a_stall(self) -> None:
        """A stall of 10 s inside a 30 s grace: each slot is a `schedule` run, none missed."""
        job = every_job(1, next_slot_at=T0 + timedelta(seconds=1))
        grace = CatchupLimits(grace_s=30, max_runs=3, max_records=20)
        plan = plan_due(job, T0 + timedelta(seconds=10.7), window_s=3600, limits=grace)
        assert [d.scheduled_for.second for d in plan.decisions] == list(range(1, 11))
        assert {(d.trigger, d.skip) for d in plan.decisions} == {(Trigger.SCHEDULE, None)}

    def test_missed_slots_go_to_the_policy_and_ordinary_ones_run(self) -> None:
        """Slots later than the grace are missed (`latest` runs the last of them); the
        ordinary slots after them are `schedule` runs."""
        job = every_job(1, next_slot_at=T0 + timedelta(seconds=1))
        grace = CatchupLimits(grace_s=2, max_runs=3, max_records=50)
        plan = plan_due(job, T0 + timedelta(seconds=6.5), window_s=3600, limits=grace)
        kinds = [(d.scheduled_for.second, d.trigger, d.skip) for d in plan.decisions]
        assert kinds == [
            (1, Trigger.CATCHUP, ErrorKind.MISSED),
            (2, Trigger.CATCHUP, ErrorKind.MISSED),
            (3, Trigger.CATCHUP, ErrorKind.MISSED),
            (4, Trigger.CATCHUP, None),
            (5, Trigger.SCHEDULE, None),
            (6, Trigger.SCHEDULE, None),
        ]

    def test_replace_keeps_the_last_ordinary_slot(self) -> None:
        """Under `replace`, ordinary slots due together: the last runs, the others are
        recorded superseded."""
        job = every_job(1, next_slot_at=T0 + timedelta(seconds=1), overlap=Overlap.REPLACE)
        grace = CatchupLimits(grace_s=30, max_runs=3, max_records=5)
        plan = plan_due(job, T0 + timedelta(seconds=3.5), window_s=3600, limits=grace)
        assert [(d.scheduled_for.second, d.skip) for d in plan.decisions] == [
            (1, ErrorKind.OVERLAP),
            (2, ErrorKind.OVERLAP),
            (3, None),
        ]
        assert "superseded" in (plan.decisions[0].note or "")

    def test_one_late_slot_is_missed(self) -> None:
        """A single slot handled later than the grace is a catch-up, not a scheduled run."""
        job = make_job(cron("0 3 * * *"), next_slot=utc(2026, 1, 2, 3))
        plan = plan_due(job, utc(2026, 1, 2, 3, 10), window_s=86400, limits=self.limits)
        assert [(d.trigger, d.skip) for d in plan.decisions] == [(Trigger.CATCHUP, None)]


def live_run(status: RunStatus) -> Run:
    return Run(
        run_id="r1",
        job_id="j",
        job_name="j",
        trigger=Trigger.SCHEDULE,
        status=status,
        queued_at=T0,
        session_key="s",
    )


class TestOverlapAndRetry:
    """Overlap decisions and retry backoff are pure functions of state."""

    @pytest.mark.parametrize(
        ("policy", "live", "action"),
        [
            (Overlap.SKIP, [], OverlapAction.START),
            (Overlap.SKIP, [RunStatus.RUNNING], OverlapAction.SKIP),
            (Overlap.ALLOW, [RunStatus.RUNNING], OverlapAction.START),
            (Overlap.QUEUE, [RunStatus.RUNNING], OverlapAction.QUEUE),
            (Overlap.QUEUE, [RunStatus.RUNNING, RunStatus.QUEUED], OverlapAction.SKIP),
            # The run ahead may not be recorded running yet: it is still the one ahead.
            (Overlap.QUEUE, [RunStatus.QUEUED], OverlapAction.QUEUE),
            (Overlap.QUEUE, [RunStatus.QUEUED, RunStatus.QUEUED], OverlapAction.SKIP),
            (Overlap.REPLACE, [RunStatus.RUNNING], OverlapAction.REPLACE),
        ],
    )
    def test_overlap(self, policy: Overlap, live: list[RunStatus], action: OverlapAction) -> None:
        assert decide_overlap(policy, [live_run(s) for s in live]) is action

    def test_only_allow_decides_without_the_live_runs(self) -> None:
        """`allow` starts whatever is live, so it never needs to read the live runs."""
        assert [p for p in Overlap if not needs_live_runs(p)] == [Overlap.ALLOW]
        busy = [live_run(RunStatus.RUNNING)]
        assert decide_overlap(Overlap.ALLOW, busy) is decide_overlap(Overlap.ALLOW, [])

    def test_retry_backoff_doubles_up_to_the_cap(self) -> None:
        policy = RetryPolicy(max_attempts=5, backoff_s=10, max_backoff_s=30)
        assert [retry_delay(policy, n) for n in range(1, 6)] == [10, 20, 30, 30, None]
