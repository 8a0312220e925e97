"""``gatewayd import openclaw``: an OpenClaw gateway's jobs and history, moved in one command.

Each of OpenClaw's three store shapes is built in the test from its documented
format (see ``openclaw_fixtures``) and imported into a real daemon by the CLI,
as a user would. The promises: every field is mapped as OpenClaw defines it and
what cannot be carried over is named; the stuck ``runningAtMs`` and the
computed ``nextRunAtMs`` are never copied (I1); history keeps its real times
and statuses; an import is all or none, a second one changes nothing, a dry run
changes no byte of the store, and OpenClaw's files are only read (I11).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from croniter import croniter
from gatewayd.durations import parse_time
from gatewayd.errors import EXIT_NO_SPACE, EXIT_USAGE
from gatewayd.testing import DaemonProcess, SmallDisk, wait_until

from tests import openclaw_fixtures as fx

HOST_ZONE = "Asia/Tokyo"
CONFIG = """
[gateway]
sweep_interval = "1h"

[cluster]
lease = "10m"

[agents.default]
command = ["cat"]

[agents.researcher]
command = ["cat"]

[alerts.pager]
command = ["true"]
"""
IMPORTED = [
    "morning brief",
    "hourly digest",
    "poll inbox",
    "reminder",
    "legacy at",
    "legacy message",
    "stuck sync",
    "weekly report",
    "past one-shot",
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path / "state", config=CONFIG, env={"TZ": HOST_ZONE}) as d:
        yield d


def run_import(d: DaemonProcess, cron_dir: Path, *flags: str) -> dict[str, Any]:
    result = d.cli("import", "openclaw", str(cron_dir), "--json", *flags)
    assert result.code == 0, result.stderr
    report: dict[str, Any] = result.json()
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in report["jobs"]}


def digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the hash of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def jobs_of(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in d.call("cron.list", {"all": True})}


def all_runs(d: DaemonProcess) -> list[dict[str, Any]]:
    return [r for job in jobs_of(d).values() for r in d.call("cron.runs", {"job": job["id"]})]


def next_slot(d: DaemonProcess, name: str) -> datetime:
    """When ``cron next`` says the job fires next (its slot, plus its stagger)."""
    slots = d.call("cron.next", {"job": name, "count": 1})
    return parse_time(slots[0]["at"])


def cron_next(expr: str, tz: str, after: datetime) -> datetime:
    start = after.astimezone(ZoneInfo(tz))
    found: datetime = croniter(expr, start).get_next(datetime)
    return found


def shape_of(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=sorted(fx.SHAPES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, fx.Expected]:
    shape = shape_of(request)
    cron_dir, expected = fx.SHAPES[shape](tmp_path / "openclaw", fx.now_ms())
    return shape, cron_dir, expected


class TestEachStoreShape:
    def test_jobs_arrive_mapped_with_what_stays_behind_named(
        self, daemon: DaemonProcess, store: tuple[str, Path, fx.Expected]
    ) -> None:
        """Every job of every shape arrives with ``source: api`` and its OpenClaw id kept;
        schedules, payloads, sessions, timeouts and one-shot deletion are mapped as
        OpenClaw defines them; a payload kind gatewayd lacks is refused by name; and
        delivery, model, thinking, wakeMode and an unnamed-sink failureAlert are
        reported job by job, never dropped in silence."""
        shape, cron_dir, _ = store
        report = run_import(daemon, cron_dir)
        assert report["store"] == shape
        assert report["summary"]["imported"] == len(IMPORTED)
        assert report["summary"]["skipped"] == 1
        outcomes = by_name(report)
        assert outcomes["browser task"]["outcome"] == "cannot-import"
        assert "browserTask" in outcomes["browser task"]["reason"]

        jobs = jobs_of(daemon)
        assert sorted(jobs) == sorted(IMPORTED)
        for name in IMPORTED:
            assert jobs[name]["source"] == "api"
            assert jobs[name]["origin"]["system"] == "openclaw"
        brief = jobs["morning brief"]
        assert brief["origin"]["id"] == "oc-brief"
        assert brief["description"] == "Summarise the night"
        assert brief["schedule"] == {
            "kind": "cron",
            "expr": "0 7 * * *",
            "tz": "America/Los_Angeles",
            "every_s": None,
            "at": None,
            "anchor": None,
        }
        assert brief["stagger_s"] == 30.0
        assert brief["timeout_s"] == 120.0
        assert brief["payload"] == {
            "kind": "agent_turn",
            "message": "Summarize overnight updates.",
            "agent": "default",
        }
        left = " | ".join(outcomes["morning brief"]["left_behind"])
        for named in ("delivery: announce slack channel:C1234567890", "payload.model", "thinking"):
            assert named in left
        assert "wakeMode" in left
        assert "model, usage and delivery outcome" in left

        assert jobs["hourly digest"]["schedule"]["tz"] == HOST_ZONE
        assert jobs["hourly digest"]["session"] == "main"
        assert any("host's, Asia/Tokyo" in n for n in outcomes["hourly digest"]["notes"])
        assert jobs["poll inbox"]["schedule"]["every_s"] == 300.0
        assert jobs["reminder"]["delete_after_run"] is True
        assert jobs["legacy at"]["payload"] == {"kind": "system_event", "text": "Legacy reminder"}
        legacy = jobs["legacy message"]
        assert legacy["payload"]["agent"] == "researcher"
        assert legacy["payload"]["message"] == "Look for new papers"
        assert legacy["schedule"]["every_s"] == 3600.0
        stuck = outcomes["stuck sync"]
        assert any(
            "delivery: webhook https://example.invalid/hook" in x for x in stuck["left_behind"]
        )
        assert any("--alert-sink" in x for x in stuck["left_behind"])
        assert jobs["weekly report"]["enabled"] is False
        assert jobs["weekly report"]["origin"]["id"] == "oc-weekly"
        assert jobs["past one-shot"]["enabled"] is False

    def test_state_is_never_copied_and_the_stuck_job_runs(
        self, daemon: DaemonProcess, store: tuple[str, Path, fx.Expected]
    ) -> None:
        """I1: OpenClaw's ``runningAtMs`` (its stuck 'already running' flag) is reported
        and not copied: the job is not running, and ``cron run`` runs it at once;
        ``nextRunAtMs`` is not copied either: the next slot is the schedule's."""
        _, cron_dir, _ = store
        report = run_import(daemon, cron_dir)
        notes = " ".join(by_name(report)["stuck sync"]["notes"])
        assert "runningAtMs" in notes and "68157" in notes
        stuck = jobs_of(daemon)["stuck sync"]
        assert stuck["running_run_id"] is None
        result = daemon.call("cron.run", {"job": "stuck sync"})
        assert result["ran"] is True
        ended = daemon.call("runs.wait", {"run_id": result["run_id"], "timeout_s": 20})
        assert ended["status"] == "succeeded"
        assert parse_time(stuck["next_run_at"]) > fx.now_ms() - timedelta(minutes=1)

    def test_cron_next_of_each_job_is_what_its_schedule_means(
        self, daemon: DaemonProcess, store: tuple[str, Path, fx.Expected]
    ) -> None:
        """Each imported job's next slot is its schedule's own: cron in its zone (the
        host's when OpenClaw named none), every from its anchor, at at its time; a job
        OpenClaw had disabled fires nothing until it is enabled."""
        _, cron_dir, expected = store
        run_import(daemon, cron_dir)
        now = fx.now_ms()
        brief = cron_next("0 7 * * *", "America/Los_Angeles", now)
        assert brief <= next_slot(daemon, "morning brief") < brief + timedelta(seconds=30)
        assert next_slot(daemon, "hourly digest") == cron_next("0 * * * *", HOST_ZONE, now)
        assert next_slot(daemon, "stuck sync") == cron_next("*/15 * * * *", "UTC", now)
        assert daemon.call("cron.next", {"job": "weekly report"}) == []  # disabled
        daemon.call("cron.enable", {"job": "weekly report"})
        assert next_slot(daemon, "weekly report") == cron_next("30 2 * * 1", "Europe/Berlin", now)
        anchor = datetime.fromtimestamp(expected.anchor_ms / 1000, tz=ZoneInfo("UTC"))
        poll = next_slot(daemon, "poll inbox")
        steps = (poll - anchor) / timedelta(minutes=5)
        assert steps == round(steps) and poll > now and poll - now <= timedelta(minutes=5)
        assert next_slot(daemon, "reminder") == expected.future_at
        assert next_slot(daemon, "legacy at") == expected.legacy_at

    def test_history_keeps_real_times_and_statuses(
        self, daemon: DaemonProcess, store: tuple[str, Path, fx.Expected]
    ) -> None:
        """Each finished line becomes an ended run marked imported, with its real start,
        end, duration, status (ok, error, skipped), error and summary, and trigger
        manual where OpenClaw says so; lines that do not parse are counted; a run that
        retention would delete at once is left out and counted; and doctor finds the
        record the import leaves true (I1, I2)."""
        _, cron_dir, expected = store
        report = run_import(daemon, cron_dir)
        brief = by_name(report)["morning brief"]
        assert brief["runs"] == fx.GOOD_RUNS["oc-brief"] - fx.BEYOND_RETENTION["oc-brief"]
        assert brief["broken_lines"] == fx.BROKEN_LINES["oc-brief"]
        assert brief["runs_beyond_retention"] == fx.BEYOND_RETENTION["oc-brief"]
        assert report["summary"]["broken_lines"] == sum(fx.BROKEN_LINES.values())

        lines = [orjson.loads(x) for x in fx.history(expected.now)["oc-brief"][:4]]
        runs = sorted(
            daemon.call("cron.runs", {"job": "morning brief"}), key=lambda r: r["queued_at"]
        )
        assert [r["status"] for r in runs] == ["succeeded", "failed", "skipped", "succeeded"]
        assert all(r["imported"] for r in runs)
        assert [r["trigger"] for r in runs] == ["schedule", "schedule", "schedule", "manual"]
        first = runs[0]
        started = datetime.fromtimestamp(lines[0]["runAtMs"] / 1000, tz=ZoneInfo("UTC"))
        ended = datetime.fromtimestamp(lines[0]["ts"] / 1000, tz=ZoneInfo("UTC"))
        assert parse_time(first["started_at"]) == started
        assert parse_time(first["ended_at"]) == ended
        assert first["duration_ms"] == 4000
        assert first["summary"] == "All quiet"
        assert runs[1]["error"] == "model overloaded"
        assert daemon.call("runs.last", {"job": "morning brief"})["summary"] == "Asked for"
        stuck_runs = daemon.call("cron.runs", {"job": "stuck sync"})
        assert sorted(r["status"] for r in stuck_runs) == ["failed", "succeeded"]
        doctor = daemon.cli("doctor", "--json")
        assert doctor.code == 0 and doctor.json()["violations"] == [], doctor.stdout


class TestSafety:
    def test_a_second_import_changes_nothing(self, daemon: DaemonProcess, tmp_path: Path) -> None:
        """Importing again adds nothing: each job is known by its kept OpenClaw id,
        however it was renamed since, and its history is not added twice."""
        cron_dir, _ = fx.split_files(tmp_path / "openclaw", fx.now_ms())
        run_import(daemon, cron_dir)
        first = jobs_of(daemon)
        runs = len(all_runs(daemon))
        daemon.call("cron.update", {"job": "poll inbox", "patch": {"name": "inbox poll"}})
        again = run_import(daemon, cron_dir)
        assert again["summary"]["imported"] == 0
        assert again["summary"]["already_imported"] == len(IMPORTED)
        assert by_name(again)["poll inbox"]["outcome"] == "already-imported"
        after = jobs_of(daemon)
        assert sorted(j["id"] for j in after.values()) == sorted(j["id"] for j in first.values())
        assert len(all_runs(daemon)) == runs

    def test_a_name_taken_in_gatewayd_is_skipped_not_overwritten(
        self, daemon: DaemonProcess, tmp_path: Path
    ) -> None:
        """A job whose name gatewayd already has is reported and skipped; the job that
        has the name is left exactly as it was."""
        mine = daemon.add_job("--name", "reminder", "--every", "1h", "--command", "true")
        cron_dir, _ = fx.single_file(tmp_path / "openclaw", fx.now_ms())
        report = run_import(daemon, cron_dir)
        assert by_name(report)["reminder"]["outcome"] == "name-taken"
        assert mine["id"] in by_name(report)["reminder"]["reason"]
        kept = daemon.call("cron.get", {"job": "reminder"})
        assert kept["id"] == mine["id"] and kept["payload"] == mine["payload"]
        assert kept["origin"] is None

    def test_a_dry_run_prints_the_plan_and_changes_no_byte(
        self, daemon: DaemonProcess, store: tuple[str, Path, fx.Expected]
    ) -> None:
        """``--dry-run`` prints the whole plan (each job's gatewayd spec and what stays
        behind) and changes nothing: the store's bytes are the same afterwards, and so
        are OpenClaw's files (which a real import does not touch either)."""
        _, cron_dir, _ = store
        openclaw = cron_dir.parent
        store_files = [daemon.state_dir / "gatewayd.db", daemon.state_dir / "gatewayd.db-wal"]
        before = [p.read_bytes() for p in store_files]
        theirs = digest(openclaw)
        report = run_import(daemon, cron_dir, "--dry-run")
        assert report["dry_run"] is True
        assert report["summary"]["imported"] == len(IMPORTED)
        assert by_name(report)["morning brief"]["job"]["schedule"]["expr"] == "0 7 * * *"
        assert [p.read_bytes() for p in store_files] == before
        assert daemon.call("cron.list", {"all": True}) == []
        text = daemon.cli("import", "openclaw", str(cron_dir), "--dry-run")
        assert text.code == 0 and "dry run: nothing was changed" in text.stdout
        run_import(daemon, cron_dir)
        assert digest(openclaw) == theirs

    def test_a_refused_import_changes_nothing(self, daemon: DaemonProcess, tmp_path: Path) -> None:
        """An unknown ``--alert-sink`` refuses the whole import with exit 2, naming it;
        with a configured one, failureAlert becomes the job's alert policy."""
        cron_dir, _ = fx.single_file(tmp_path / "openclaw", fx.now_ms())
        refused = daemon.cli("import", "openclaw", str(cron_dir), "--alert-sink", "nope")
        assert refused.code == EXIT_USAGE
        assert "--alert-sink" in refused.stderr and "nope" in refused.stderr
        assert daemon.call("cron.list", {"all": True}) == []
        run_import(daemon, cron_dir, "--alert-sink", "pager")
        alerts = daemon.call("cron.get", {"job": "stuck sync"})["alerts"]
        assert alerts["sinks"] == ["pager"] and alerts["after"] == 3
        assert alerts["cooldown_s"] == 600.0

    def test_no_store_in_the_directory_is_not_found(
        self, daemon: DaemonProcess, tmp_path: Path
    ) -> None:
        """A directory without an OpenClaw store is exit 4, naming what was looked for."""
        (tmp_path / "empty").mkdir()
        result = daemon.cli("import", "openclaw", str(tmp_path / "empty"))
        assert result.code == 4
        assert "jobs.json" in result.stderr


class TestFailedImport:
    def test_a_store_fault_mid_import_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """I11: an import that the store cannot finish (here the disk fills up while its
        one transaction is written) is refused naming the cause, and leaves no job and
        no run behind; the daemon lives on and takes the next change."""
        now = fx.now_ms()
        cron_dir, _ = fx.single_file(tmp_path / "openclaw", now)
        start = fx.ms(now) - fx.DAY_MS
        big = "x" * 24_000
        lines = [
            orjson.dumps(
                {
                    "ts": start + i * 60_000 + 1000,
                    "jobId": "oc-poll",
                    "action": "finished",
                    "status": "ok",
                    "runAtMs": start + i * 60_000,
                    "summary": big,
                }
            ).decode()
            for i in range(900)
        ]
        (cron_dir / "runs" / "oc-poll.jsonl").write_text("\n".join(lines) + "\n")
        with (
            SmallDisk(tmp_path / "fs", size="12m") as disk,
            DaemonProcess(disk.path / "state", config=CONFIG, files_dir=tmp_path) as d,
        ):
            result = d.cli("import", "openclaw", str(cron_dir))
            assert result.code == EXIT_NO_SPACE, result.stderr
            assert "nothing was imported" in result.stderr or "space" in result.stderr
            assert d.call("cron.list", {"all": True}) == []
            assert d.call("gateway.status")["runs"]["total"] == 0
            wait_until(
                lambda: d.call("gateway.status")["store"]["writable"], what="the store to write"
            )
            d.add_job("--name", "after", "--every", "1h", "--command", "true")
            assert list(jobs_of(d)) == ["after"]
