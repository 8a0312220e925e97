"""Reading OpenClaw's stores and mapping their jobs, without a daemon (pure but for the files).

The promises: OpenClaw's files are only read, its SQLite database too (and what
its write-ahead log holds is seen); a store gatewayd cannot read says how to
export it first; each legacy shape is recognised; nothing is dropped in
silence (I11: bad input is named and changes nothing).
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from gatewayd.errors import InvalidInput, NotFound
from gatewayd.importers.openclaw import read_plan
from gatewayd.importers.openclaw.history import read_lines
from gatewayd.importers.openclaw.jobs import plan_job
from gatewayd.importers.plan import PlannedJob
from gatewayd.model import RunStatus
from gatewayd.settings import MAX_SUMMARY_BYTES

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def mapped(raw: dict[str, Any], **kw: Any) -> PlannedJob:
    options: dict[str, Any] = {"host_zone": "Europe/Paris", "alert_sink": None, "now": NOW}
    options.update(kw)
    return plan_job(raw, None, **options)


def base(**fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": "j1",
        "name": "job",
        "schedule": {"kind": "every", "everyMs": 60_000, "anchorMs": 1_764_000_000_000},
        "payload": {"kind": "systemEvent", "text": "hi"},
    }
    job.update(fields)
    return job


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


class TestJobShapes:
    def test_a_job_wrapped_in_data_is_unwrapped(self) -> None:
        """Older stores wrapped each job in ``data`` (or ``job``): its fields are read."""
        job = mapped({"data": base(name="wrapped")})
        assert job.origin_id == "j1" and job.spec is not None
        assert job.spec["name"] == "wrapped"

    def test_legacy_at_ms_and_a_missing_kind_are_read(self) -> None:
        """``{"atMs": N}`` with no kind is a one-shot at N milliseconds."""
        job = mapped(base(schedule={"atMs": 1_800_000_000_000}))
        assert job.spec is not None
        assert job.spec["schedule"] == {"kind": "at", "at": "2027-01-15T08:00:00Z"}
        assert job.spec["delete_after_run"] is True

    def test_a_top_of_hour_expression_without_stagger_says_openclaw_staggered_it(self) -> None:
        """OpenClaw spread ``0 * * * *`` over five minutes by default; the report says so."""
        job = mapped(base(schedule={"kind": "cron", "expr": "0 * * * *", "tz": "UTC"}))
        assert any("top-of-hour" in note for note in job.notes)
        exact = mapped(base(schedule={"kind": "cron", "expr": "0 7 * * *", "tz": "UTC"}))
        assert not any("top-of-hour" in note for note in exact.notes)

    def test_other_session_targets_and_unknown_fields_are_named(self) -> None:
        """A target other than main/isolated, and any field gatewayd does not know, are
        named in what stays behind."""
        job = mapped(base(sessionTarget="session:abc", notify=True, sessionKey="agent:x"))
        left = " ".join(job.left_behind)
        assert "sessionTarget 'session:abc'" in left
        assert "notify (True)" in left and "sessionKey" in left

    def test_a_disabled_failure_alert_carries_nothing_and_says_so(self) -> None:
        """``failureAlert: false`` is no alert; ``enabled: false`` is named, not carried."""
        assert "alerts" not in (mapped(base(failureAlert=False)).spec or {})
        job = mapped(base(failureAlert={"enabled": False, "after": 2}), alert_sink="ops")
        assert "alerts" not in (job.spec or {})
        assert any("disabled in OpenClaw" in x for x in job.left_behind)

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            ({"schedule": {"kind": "rrule"}}, "schedule.kind 'rrule'"),
            ({"schedule": {}}, "schedule: no kind"),
            ({"payload": {"kind": "agentTurn"}}, "payload.message"),
            ({"payload": None}, "payload: missing"),
            ({"schedule": {"kind": "every", "everyMs": -5}}, "schedule.everyMs"),
            ({"name": None}, "name: missing"),
        ],
    )
    def test_a_job_that_cannot_be_carried_says_why(
        self, fields: dict[str, Any], named: str
    ) -> None:
        """A job gatewayd cannot hold is refused by name, with the field that stops it."""
        job = mapped(base(**fields))
        assert job.spec is None
        assert job.refusal is not None and named in job.refusal


class TestHistoryLines:
    def test_lines_that_do_not_parse_are_counted_never_fatal(self) -> None:
        """Good lines of each status become runs, oldest first; the rest are counted."""
        lines = [
            {"ts": 1_764_000_010_000, "jobId": "j", "action": "finished", "status": "error"},
            {"ts": 1_764_000_000_000, "jobId": "j", "action": "finished", "status": "ok"},
            {"ts": 1_764_000_020_000, "jobId": "j", "action": "finished", "status": "odd"},
            {"ts": "soon", "jobId": "j", "action": "finished", "status": "ok"},
            {"ts": 1, "jobId": "j", "action": "finished", "status": "ok"},  # 1970
            {"ts": 1_764_000_000_000, "jobId": "j", "action": "started"},
        ]
        data = b"\n".join(orjson.dumps(x) for x in lines) + b"\n{broken\n\n"
        history, _ = read_lines(data, source="runs/j.jsonl")
        assert [r.status for r in history.runs] == [RunStatus.SUCCEEDED, RunStatus.FAILED]
        assert history.broken == 4

    def test_a_summary_longer_than_gatewayd_keeps_is_cut_and_says_so(self) -> None:
        """A summary beyond what a run keeps (as an agent's reply is) is cut, marked."""
        entry = {"ts": 1_764_000_000_000, "status": "ok", "summary": "é" * MAX_SUMMARY_BYTES}
        history, _ = read_lines(orjson.dumps(entry), source="runs/j.jsonl")
        summary = history.runs[0].summary
        assert summary is not None and summary.endswith("\n[summary truncated]")
        assert len(summary.encode()) <= MAX_SUMMARY_BYTES + 32


class TestStores:
    def test_a_store_gatewayd_cannot_read_says_how_to_export(self, tmp_path: Path) -> None:
        """A SQLite database without the cron tables gatewayd reads is refused, naming
        the export that works, and left as it was."""
        (tmp_path / "state").mkdir()
        (tmp_path / "cron").mkdir()
        conn = sqlite3.connect(tmp_path / "state" / "openclaw.sqlite")
        conn.execute("CREATE TABLE cron_jobs (key TEXT, blob BLOB)")
        conn.commit()
        conn.close()
        before = digest(tmp_path)
        with pytest.raises(InvalidInput, match="openclaw cron list --all --json"):
            read_plan(tmp_path / "cron", host_zone="UTC", alert_sink=None, now=NOW)
        assert digest(tmp_path) == before

    def test_what_the_write_ahead_log_holds_is_read_and_no_file_is_touched(
        self, tmp_path: Path
    ) -> None:
        """A job committed to OpenClaw's WAL but not yet checkpointed is imported; no
        file appears beside OpenClaw's database (no -shm, no lock) and none changes."""
        (tmp_path / "state").mkdir()
        (tmp_path / "cron").mkdir()
        path = tmp_path / "state" / "openclaw.sqlite"
        writer = sqlite3.connect(path)
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE cron_jobs (store_key TEXT, job_id TEXT, job_json TEXT)")
        writer.commit()
        writer.execute(
            "INSERT INTO cron_jobs VALUES ('k', 'j1', ?)", (orjson.dumps(base()).decode(),)
        )
        writer.commit()
        try:
            assert (tmp_path / "state" / "openclaw.sqlite-wal").stat().st_size > 0
            before = digest(tmp_path)
            plan = read_plan(tmp_path / "cron", host_zone="UTC", alert_sink=None, now=NOW)
            assert [j.origin_id for j in plan.jobs] == ["j1"]
            assert plan.store == "sqlite"
            assert any("no run-log table" in note for note in plan.notes)
            assert digest(tmp_path) == before
        finally:
            writer.close()

    def test_bad_json5_names_the_file(self, tmp_path: Path) -> None:
        """A ``jobs.json`` that is not JSON5 is refused naming the file; nothing is read."""
        (tmp_path / "jobs.json").write_text("{jobs: [ {id: 'a',, } ]}")
        with pytest.raises(InvalidInput, match=r"jobs\.json: not valid JSON5"):
            read_plan(tmp_path, host_zone="UTC", alert_sink=None, now=NOW)

    def test_an_id_given_twice_is_imported_once(self, tmp_path: Path) -> None:
        """Two jobs of one id: the second is refused, naming the id."""
        body = {"version": 1, "jobs": [base(), base(name="again")]}
        (tmp_path / "jobs.json").write_bytes(orjson.dumps(body))
        plan = read_plan(tmp_path, host_zone="UTC", alert_sink=None, now=NOW)
        assert plan.jobs[0].spec is not None
        assert plan.jobs[1].refusal == "the id j1 is given twice in OpenClaw's store"

    def test_a_directory_without_a_store_is_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(NotFound, match="no OpenClaw cron store"):
            read_plan(tmp_path, host_zone="UTC", alert_sink=None, now=NOW)
