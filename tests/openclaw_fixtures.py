"""OpenClaw cron stores of each of its three shapes, built from OpenClaw's documented formats.

The same ten jobs in each: every schedule kind (cron with and without ``tz``,
with ``staggerMs``; every with ``anchorMs``; at as ISO and as legacy
``atMs``; a missing ``kind``), both payload kinds (one spelled in capitals) and
one gatewayd lacks, legacy top-level ``text``/``message``, a job wrapped in
``job``, the legacy ``jobId``, a stuck ``runningAtMs``, delivery settings,
``wakeMode``, ``model``/``thinking``, a ``failureAlert``, and a one-shot time
that has passed. History: good lines of each status (one manual), lines that
do not parse, a line of another action, and a run older than retention.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Expected:
    """What each fixture's import should bring, for the tests to check."""

    now: datetime
    anchor_ms: int
    future_at: datetime
    legacy_at: datetime
    past_at: datetime


def jobs(now: datetime) -> tuple[list[dict[str, Any]], Expected]:
    created = ms(now) - 40 * DAY_MS
    anchor = ms(now) - 3 * DAY_MS + 12_345
    future_at = (now + timedelta(days=30)).replace(microsecond=0)
    legacy_at = (now + timedelta(days=3)).replace(microsecond=0)
    past_at = (now - timedelta(days=2)).replace(microsecond=0)
    found: list[dict[str, Any]] = [
        {
            "id": "oc-brief",
            "agentId": "default",
            "name": "morning brief",
            "description": "Summarise the night",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {
                "kind": "cron",
                "expr": "0 7 * * *",
                "tz": "America/Los_Angeles",
                "staggerMs": 30_000,
            },
            "sessionTarget": "isolated",
            "wakeMode": "next-heartbeat",
            "payload": {
                "kind": "agentTurn",
                "message": "Summarize overnight updates.",
                "model": "anthropic/claude-sonnet-4",
                "thinking": "low",
                "timeoutSeconds": 120,
            },
            "delivery": {"mode": "announce", "channel": "slack", "to": "channel:C1234567890"},
            "state": {"nextRunAtMs": ms(now) + HOUR_MS, "lastRunStatus": "ok"},
        },
        {
            "id": "oc-hourly",
            "name": "hourly digest",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "cron", "expr": "0 * * * *"},
            "sessionTarget": "main",
            "wakeMode": "now",
            "payload": {"kind": "systemEvent", "text": "Hourly digest due"},
            "state": {},
        },
        {
            "id": "oc-poll",
            "name": "poll inbox",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "every", "everyMs": 5 * 60_000, "anchorMs": anchor},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "Check the inbox"},
            "state": {},
        },
        {
            "id": "oc-reminder",
            "name": "reminder",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "at", "at": future_at.strftime("%Y-%m-%dT%H:%M:%S")},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "Reminder: renew the domain"},
            "deleteAfterRun": True,
            "state": {},
        },
        {
            "id": "oc-legacy-at",
            "name": "legacy at",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"atMs": ms(legacy_at)},
            "sessionTarget": "main",
            "text": "Legacy reminder",
            "state": {},
        },
        {
            "job": {
                "id": "oc-legacy-message",
                "agentId": "researcher",
                "name": "legacy message",
                "enabled": True,
                "createdAtMs": created,
                "updatedAtMs": created,
                "schedule": {"everyMs": HOUR_MS},
                "message": "Look for new papers",
                "delivery": {"mode": "none"},
                "state": {},
            }
        },
        {
            "id": "oc-stuck",
            "name": "stuck sync",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "cron", "expr": "*/15 * * * *", "tz": "UTC"},
            "sessionTarget": "isolated",
            "payload": {"kind": "AGENTTURN", "message": "Sync the ledger"},
            "delivery": {"mode": "webhook", "to": "https://example.invalid/hook"},
            "failureAlert": {"after": 3, "cooldownMs": 600_000},
            "state": {"runningAtMs": ms(now) - 26 * HOUR_MS, "nextRunAtMs": ms(now) - HOUR_MS},
        },
        {
            "id": "oc-browser",
            "name": "browser task",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "every", "everyMs": HOUR_MS},
            "sessionTarget": "isolated",
            "payload": {"kind": "browserTask", "url": "https://example.invalid"},
            "state": {},
        },
        {
            "jobId": "oc-weekly",
            "name": "weekly report",
            "enabled": False,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "cron", "expr": "30 2 * * 1", "tz": "Europe/Berlin"},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "Weekly report"},
            "state": {},
        },
        {
            "id": "oc-past",
            "name": "past one-shot",
            "enabled": True,
            "createdAtMs": created,
            "updatedAtMs": created,
            "schedule": {"kind": "at", "at": past_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "Too late"},
            "deleteAfterRun": False,
            "state": {},
        },
    ]
    return found, Expected(
        now=now, anchor_ms=anchor, future_at=future_at, legacy_at=legacy_at, past_at=past_at
    )


def history(now: datetime) -> dict[str, list[str]]:
    """Run-log lines by job id: good ones of each status, broken ones, another action."""
    start = ms(now) - 2 * DAY_MS

    def line(job: str, offset_ms: int, status: str | None, **extra: Any) -> str:
        entry: dict[str, Any] = {
            "ts": start + offset_ms + 4_000,
            "jobId": job,
            "action": "finished",
            "runAtMs": start + offset_ms,
            "durationMs": 4_000,
        }
        if status is not None:
            entry["status"] = status
        entry.update(extra)
        return json.dumps(entry)

    return {
        "oc-brief": [
            line("oc-brief", 0, "ok", summary="All quiet", model="opus", delivered=True),
            line("oc-brief", HOUR_MS, "error", error="model overloaded"),
            line("oc-brief", 2 * HOUR_MS, "skipped"),
            line("oc-brief", 3 * HOUR_MS, "ok", summary="Asked for", trigger="manual"),
            '{"ts": 1, "jobId": "oc-brief", "action": "finished", "status": "ok"',  # cut short
            "not json at all",
            line("oc-brief", 4 * HOUR_MS, None),  # no status
            json.dumps({"ts": start, "jobId": "oc-brief", "action": "started"}),
            line("oc-brief", -40 * DAY_MS, "ok", summary="long ago"),  # beyond retention
        ],
        "oc-stuck": [line("oc-stuck", 0, "ok"), line("oc-stuck", HOUR_MS, "error", error="x")],
    }


# Good runs per job, and lines that do not parse, of :func:`history`.
GOOD_RUNS = {"oc-brief": 5, "oc-stuck": 2}
BROKEN_LINES = {"oc-brief": 3, "oc-stuck": 0}
BEYOND_RETENTION = {"oc-brief": 1, "oc-stuck": 0}


def _state_of(job: dict[str, Any]) -> dict[str, Any]:
    return dict((job.get("job") or job).get("state") or {})


def _id_of(job: dict[str, Any]) -> str:
    body = job.get("job") or job
    return str(body.get("id", body.get("jobId")))


def _write_history(cron_dir: Path, now: datetime) -> None:
    runs = cron_dir / "runs"
    runs.mkdir(parents=True)
    for job_id, lines in history(now).items():
        (runs / f"{job_id}.jsonl").write_text("\n".join(lines) + "\n")


def _json5(document: Any) -> str:
    """JSON5 as OpenClaw writes and users edit it: comments and trailing commas."""
    body = json.dumps(document, indent=2)
    return "// OpenClaw cron store\n" + body.replace("\n  ]\n}", ",\n  ],\n}")


def single_file(root: Path, now: datetime) -> tuple[Path, Expected]:
    """Shape 1: ``jobs.json`` with each job's state embedded."""
    cron = root / "cron"
    cron.mkdir(parents=True)
    found, expected = jobs(now)
    (cron / "jobs.json").write_text(_json5({"version": 1, "jobs": found}))
    _write_history(cron, now)
    return cron, expected


def split_files(root: Path, now: datetime) -> tuple[Path, Expected]:
    """Shape 2: definitions in ``jobs.json``, states in ``jobs-state.json``."""
    cron = root / "cron"
    cron.mkdir(parents=True)
    found, expected = jobs(now)
    states = {_id_of(job): _state_of(job) for job in found}
    for job in found:
        (job.get("job") or job).pop("state", None)
    (cron / "jobs.json").write_text(_json5({"version": 1, "jobs": found}))
    (cron / "jobs-state.json").write_text(json.dumps({"jobs": states}))
    _write_history(cron, now)
    return cron, expected


def sqlite_store(root: Path, now: datetime) -> tuple[Path, Expected]:
    """Shape 3: the SQLite state database, the legacy files renamed ``.migrated``."""
    cron = root / "cron"
    cron.mkdir(parents=True)
    (root / "state").mkdir()
    found, expected = jobs(now)
    (cron / "jobs.json.migrated").write_text(json.dumps({"version": 1, "jobs": []}))
    conn = sqlite3.connect(root / "state" / "openclaw.sqlite")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE cron_jobs (store_key TEXT NOT NULL, job_id TEXT NOT NULL, "
        "job_json TEXT NOT NULL, state_json TEXT, updated_at_ms INTEGER, "
        "PRIMARY KEY (store_key, job_id))"
    )
    conn.execute(
        "CREATE TABLE cron_run_logs (id INTEGER PRIMARY KEY, store_key TEXT NOT NULL, "
        "job_id TEXT NOT NULL, run_at_ms INTEGER, ts INTEGER, status TEXT, "
        "duration_ms INTEGER, entry_json TEXT)"
    )
    key = str(cron / "jobs.json")
    for job in found:
        body = dict(job.get("job") or job)
        state = body.pop("state", {})
        conn.execute(
            "INSERT INTO cron_jobs VALUES (?, ?, ?, ?, ?)",
            (key, _id_of(job), json.dumps(body), json.dumps(state), body["updatedAtMs"]),
        )
    for job_id, lines in history(now).items():
        for text in lines:
            conn.execute(
                "INSERT INTO cron_run_logs (store_key, job_id, entry_json) VALUES (?, ?, ?)",
                (key, job_id, text),
            )
    conn.commit()
    conn.close()
    return cron, expected


SHAPES = {
    "jobs.json": single_file,
    "jobs.json+jobs-state.json": split_files,
    "sqlite": sqlite_store,
}


def now_ms() -> datetime:
    """Now, to the millisecond (as OpenClaw's times are)."""
    return datetime.fromtimestamp(ms(datetime.now(UTC)) / 1000, UTC)
