"""``cron next``: the slots to come, across real DST transitions, as the timer fires them."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gatewayd.cli import main
from gatewayd.model import RunStatus, Schedule, ScheduleKind
from gatewayd.planning import DstShift, Upcoming, upcoming
from gatewayd.testing import DaemonProcess

from tests.harness import open_harness

# Each zone's 2026 and 2027 changes, as local dates: New York (north) springs
# forward at 02:00 in March and falls back at 02:00 in November; Sydney (south)
# springs forward at 02:00 in October and falls back at 03:00 in April.
NEW_YORK = "America/New_York"
SYDNEY = "Australia/Sydney"
TRANSITIONS = {
    NEW_YORK: {
        "spring": [datetime(2026, 3, 8, tzinfo=UTC), datetime(2027, 3, 14, tzinfo=UTC)],
        "fall": [datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 11, 7, tzinfo=UTC)],
    },
    SYDNEY: {
        "spring": [datetime(2026, 10, 3, 12, tzinfo=UTC), datetime(2027, 10, 2, 12, tzinfo=UTC)],
        "fall": [datetime(2026, 4, 4, 12, tzinfo=UTC), datetime(2027, 4, 3, 12, tzinfo=UTC)],
    },
}


def cron(expr: str, tz: str) -> Schedule:
    return Schedule(kind=ScheduleKind.CRON, expr=expr, tz=tz)


def around(expr: str, tz: str, day: datetime, count: int) -> list[Upcoming]:
    """The ``count`` slots of ``expr`` in ``tz`` from six hours before ``day``."""
    return upcoming(cron(expr, tz), count=count, after=day - timedelta(hours=6))


def marks(expr: str, tz: str, day: datetime, count: int) -> list[DstShift | None]:
    return [u.dst for u in around(expr, tz, day, count)]


class TestMarks:
    """A slot placed by a daylight-saving change says how: gap or fold."""

    @pytest.mark.parametrize("tz", [NEW_YORK, SYDNEY])
    @pytest.mark.parametrize("which", [0, 1])
    def test_a_daily_slot_in_the_spring_gap_is_marked_gap(self, tz: str, which: int) -> None:
        """02:30 does not exist on the spring-forward day: it fires at 03:00, marked gap."""
        day = TRANSITIONS[tz]["spring"][which]
        slots = around("30 2 * * *", tz, day, 3)
        gaps = [u for u in slots if u.dst is DstShift.GAP]
        assert len(gaps) == 1
        assert gaps[0].at.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "03:00"
        assert [u.dst for u in slots].count(None) == 2

    @pytest.mark.parametrize("which", [0, 1])
    def test_sydney_s_daily_slot_in_the_fall_fold_is_marked_fold(self, which: int) -> None:
        """Sydney's 02:30 occurs twice when it falls back (03:00 to 02:00): the first fires."""
        day = TRANSITIONS[SYDNEY]["fall"][which]
        assert DstShift.FOLD in marks("30 2 * * *", SYDNEY, day, 3)
        assert DstShift.GAP not in marks("30 2 * * *", SYDNEY, day, 3)

    @pytest.mark.parametrize("which", [0, 1])
    def test_new_york_s_daily_slot_on_fall_back_day_is_plain(self, which: int) -> None:
        """New York's fold is 01:00 to 02:00: its 02:30 happens once, unmarked."""
        day = TRANSITIONS[NEW_YORK]["fall"][which]
        assert marks("30 2 * * *", NEW_YORK, day, 3) == [None, None, None]

    @pytest.mark.parametrize("tz", [NEW_YORK, SYDNEY])
    @pytest.mark.parametrize("which", [0, 1])
    def test_an_hourly_slot_in_the_fold_fires_once_marked_fold(self, tz: str, which: int) -> None:
        """An hourly job fires the doubled hour once, at its first occurrence, marked fold."""
        day = TRANSITIONS[tz]["fall"][which]
        slots = around("0 * * * *", tz, day, 30)
        folds = [u for u in slots if u.dst is DstShift.FOLD]
        assert len(folds) == 1
        gaps_between = [b.at - a.at for a, b in itertools.pairwise(slots)]
        assert timedelta(hours=2) in gaps_between, "the second occurrence is not fired"


class TestTheTimerAgrees:
    """The preview is the timer's own choice: slot for slot, on a FakeClock."""

    @pytest.mark.parametrize(
        ("expr", "tz", "stagger", "count"),
        [
            ("30 2 * * *", NEW_YORK, None, 4),
            ("0 * * * *", NEW_YORK, None, 30),
            ("30 2 * * *", SYDNEY, None, 4),
            ("0 * * * *", SYDNEY, "10m", 30),
        ],
    )
    @pytest.mark.parametrize("season", ["spring", "fall"])
    async def test_cron_next_is_what_the_timer_fires(
        self, tmp_path: Path, expr: str, tz: str, stagger: str | None, count: int, season: str
    ) -> None:
        """`cron next` from a job's creation names the slots the timer then fires, at the
        instants it fires them (the stagger applied), across the 2027 DST change."""
        start = TRANSITIONS[tz][season][1] - timedelta(hours=12)
        async with open_harness(tmp_path, start=start) as h:
            h.runner.auto_finish = True
            flat = {"name": "j", "cron": expr, "tz": tz, "command": "true"}
            if stagger is not None:
                flat["stagger"] = stagger
            job_id = await h.add(**flat)
            job = await h.gateway.reads.job(job_id)
            preview = h.gateway.reads.upcoming(job, count=count, after=None)
            assert len(preview) == count
            fired_at = []
            for n in range(1, count + 1):
                wake = await h.clock.wait_for_sleeper() + h.scheduler.claims_ahead
                fired_at.append(wake)
                await h.advance_to(wake)
                await h.until(partial(h.ended_runs, job_id, n, RunStatus.SUCCEEDED))
            runs = await h.ended_runs(job_id, count, RunStatus.SUCCEEDED)
            assert [r.scheduled_for for r in runs] == [u.slot for u in preview]
            assert fired_at == [u.at for u in preview]


class TestTheCommand:
    """`gatewayd cron next --cron/--every` needs no daemon, and --json is the contract."""

    def test_json_of_a_schedule_with_no_daemon(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each slot: at (UTC), local (in the zone), utc_offset and its dst mark."""
        code = main(
            [
                "cron",
                "next",
                "--cron",
                "30 2 * * *",
                "--tz",
                NEW_YORK,
                "--from",
                "2026-03-07T00:00:00Z",
                "--count",
                "2",
                "--json",
                "--state-dir",
                "/nonexistent",
            ]
        )
        assert code == 0
        assert json.loads(capsys.readouterr().out) == [
            {
                "at": "2026-03-07T07:30:00Z",
                "local": "2026-03-07T02:30:00-05:00",
                "utc_offset": "-05:00",
                "dst": None,
            },
            {
                "at": "2026-03-08T07:00:00Z",
                "local": "2026-03-08T03:00:00-04:00",
                "utc_offset": "-04:00",
                "dst": "gap",
            },
        ]

    def test_a_bad_schedule_names_the_field(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Bad input gets an error that names what is wrong, and a usage exit code."""
        assert main(["cron", "next", "--cron", "99 * * * *"]) == 2
        assert "minute 99" in capsys.readouterr().err
        assert main(["cron", "next", "--every", "soon"]) == 2
        assert "every" in capsys.readouterr().err

    def test_a_job_s_next_slots_from_a_real_daemon(self, tmp_path: Path) -> None:
        """`cron next JOB` asks the daemon: the first slot is the job's stored next one."""
        with DaemonProcess(tmp_path / "state") as d:
            job = d.add_job(
                "--name", "daily", "--cron", "30 2 * * *", "--tz", SYDNEY, "--system-event", "hi"
            )
            result = d.cli("cron", "next", "daily", "--count", "3", "--json")
            assert result.code == 0, result.stderr
            slots = result.json()
            assert [s["at"] for s in slots][:1] == [job["next_run_at"]]
            assert all(s["local"].endswith(("+10:00", "+11:00")) for s in slots)
            text = d.cli("cron", "next", "daily", "--count", "1")
            assert text.code == 0 and " in " in text.stdout, text.stdout
            missing = d.cli("cron", "next", "nope")
            assert missing.code != 0 and "nope" in missing.stderr
            assert d.cli("cron", "disable", "daily").code == 0
            disabled = d.cli("cron", "next", "daily", "--json")
            assert disabled.code == 0 and disabled.json() == [], "a disabled job fires nothing"
            zoned = d.cli("cron", "next", "daily", "--tz", "UTC")
            assert zoned.code == 2 and "tz" in zoned.stderr
            garbled = d.cli("cron", "next", "daily", "--from", "soonish")
            assert garbled.code == 2 and "from:" in garbled.stderr
