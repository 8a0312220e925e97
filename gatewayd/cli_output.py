"""How the CLI prints results: readable tables by default, JSON with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import orjson

from gatewayd.durations import format_duration, parse_time


def print_json(value: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_json_line(value: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(orjson.dumps(value).decode() + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    stream.write("\n".join(lines) + "\n")


def schedule_text(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind")
    if kind == "cron":
        tz = schedule.get("tz") or "UTC"
        return f"cron {schedule.get('expr')}" + ("" if tz == "UTC" else f" ({tz})")
    if kind == "every":
        return f"every {format_duration(float(schedule.get('every_s') or 0))}"
    return f"at {schedule.get('at')}"


def payload_text(payload: dict[str, Any]) -> str:
    kind = payload.get("kind")
    if kind == "exec":
        text = payload.get("command") or f"sh -c {payload.get('shell')!r}"
    elif kind == "agent_turn":
        text = f"agent {payload.get('agent')}: {payload.get('message')}"
    else:
        text = f"event: {payload.get('text')}"
    return text if len(text) <= 48 else text[:45] + "..."


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """One ``key  value`` line per field, keys aligned, ``-`` for nothing."""
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {'-' if value is None else value}")


def print_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    if not jobs:
        print("no jobs")
        return
    rows = []
    for job in jobs:
        last = job.get("last_run") or {}
        rows.append(
            [
                job["id"],
                job["name"],
                "yes" if job["enabled"] else "no",
                schedule_text(job["schedule"]),
                job.get("next_run_at"),
                last.get("status"),
                job.get("running_run_id"),
            ]
        )
    table(["ID", "NAME", "ENABLED", "SCHEDULE", "NEXT RUN", "LAST", "RUNNING"], rows)


def print_job(job: dict[str, Any]) -> None:
    last = job.get("last_run") or {}
    retry = job.get("retry") or {}
    timeout = job.get("timeout_s")
    fields = [
        ("id", job["id"]),
        ("name", job["name"]),
        ("description", job.get("description")),
        ("enabled", "yes" if job["enabled"] else "no"),
        ("schedule", schedule_text(job["schedule"])),
        ("payload", payload_text(job["payload"])),
        ("next run", job.get("next_run_at")),
        ("running", job.get("running_run_id")),
        ("last run", f"{last.get('run_id')} {last.get('status')}" if last else None),
        ("timeout", "default" if timeout is None else format_duration(float(timeout))),
        ("overlap", job.get("overlap")),
        ("catch-up", job.get("catchup")),
        ("retry", f"{retry.get('max_attempts', 1) - 1} retries"),
        ("stagger", format_duration(float(job.get("stagger_s") or 0))),
        ("session", job.get("session")),
        ("source", job.get("source")),
        ("alerts", _alerts_text(job.get("alerts") or {})),
        ("pause after", job.get("pause_after") and f"{job['pause_after']} failures in a row"),
        ("paused", _paused_text(job.get("paused"))),
        ("disabled", _disabled_text(job.get("disabled"))),
        ("origin", _origin_text(job.get("origin"))),
    ]
    print_fields(fields)


def _origin_text(origin: dict[str, Any] | None) -> str | None:
    return None if not origin else f"imported from {origin['system']} job {origin['id']}"


def _alerts_text(alerts: dict[str, Any]) -> str | None:
    sinks = alerts.get("sinks") or []
    if not sinks:
        return None
    text = f"to {', '.join(sinks)} after {alerts.get('after', 1)} failures in a row"
    cooldown = alerts.get("cooldown_s")
    if cooldown is not None:
        text += f", again every {format_duration(float(cooldown))}"
    within = alerts.get("expect_success_within_s")
    if within is not None:
        text += f"; if no success within {format_duration(float(within))}"
    return text


def _paused_text(paused: dict[str, Any] | None) -> str | None:
    if not paused:
        return None
    return (
        f"since {paused['at']} after {paused['failures']} failures in a row "
        f"(run {paused['run_id']}); `cron enable` resumes"
    )


def _disabled_text(disabled: dict[str, Any] | None) -> str | None:
    if not disabled:
        return None
    if disabled.get("at") is None:
        return "yes"
    return f"since {disabled['at']} by {disabled.get('by') or 'the pause rule'}"


def print_why(why: dict[str, Any]) -> None:
    """``cron why``: each slot since ``since`` and what became of it, then what is next."""
    print(f"job {why['job']['name']} ({why['job']['id']}), since {why['since']}")
    if why.get("truncated"):
        print("(older slots left out)")
    rows = [
        [
            entry["at"],
            entry["kind"] if entry["kind"] != "slot" else "",
            entry["fate"],
            entry.get("run_id"),
            entry["detail"],
        ]
        for entry in why["slots"]
    ]
    if rows:
        table(["at", "kind", "what became of it", "run", "why"], rows)
    else:
        print("no slot, and no run, in that time")
    print(why["summary"])


def print_alerts(alerts: Sequence[dict[str, Any]]) -> None:
    """``gatewayd alerts``: each alert, its sink and how its delivery stands."""
    if not alerts:
        print("no alerts")
        return
    rows = [
        [
            a["raised_at"],
            a["job"]["name"],
            a["reason"],
            a["sink"],
            a["state"],
            len(a.get("attempts") or ()),
            a.get("error") if a["state"] != "delivered" else a.get("delivered_at"),
        ]
        for a in alerts
    ]
    table(["raised", "job", "reason", "sink", "state", "attempts", "error / delivered"], rows)


def print_runs(runs: Sequence[dict[str, Any]]) -> None:
    if not runs:
        print("no runs")
        return
    rows = [
        [
            r["run_id"],
            r["trigger"],
            r["status"],
            r.get("scheduled_for"),
            r.get("started_at"),
            None if r.get("duration_ms") is None else f"{r['duration_ms']}ms",
            r.get("exit_code"),
            r.get("error"),
        ]
        for r in runs
    ]
    table(["RUN ID", "TRIGGER", "STATUS", "SCHEDULED", "STARTED", "TOOK", "EXIT", "ERROR"], rows)


def print_run(run: dict[str, Any]) -> None:
    keys = [
        "run_id",
        "job_id",
        "job_name",
        "trigger",
        "status",
        "attempt",
        "scheduled_for",
        "queued_at",
        "started_at",
        "ended_at",
        "duration_ms",
        "exit_code",
        "error",
        "error_kind",
        "stop_reason",
        "session_key",
        "owner",
        "pid",
        "summary",
    ]
    print_fields([(key, run.get(key)) for key in keys])
    tail = run.get("output_tail")
    if tail:
        print("output (tail):")
        for line in tail.rstrip("\n").splitlines()[-20:]:
            print(f"  {line}")


def print_status(status: dict[str, Any]) -> None:
    runs = status.get("runs", {})
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(runs.get("by_status", {}).items()))
    fields = [
        ("version", status.get("version")),
        ("instance", status.get("instance_id")),
        ("pid", status.get("pid")),
        ("state dir", status.get("state_dir")),
        ("socket", status.get("socket")),
        ("started", status.get("started_at")),
        ("jobs", f"{status['jobs']['total']} ({status['jobs']['enabled']} enabled)"),
        ("runs", f"{runs.get('total')} ({by_status or 'none'}); {runs.get('active')} active"),
        ("next wake", status.get("next_wake_at")),
    ]
    store = status.get("store", {})
    fault = store.get("fault")
    fields.append(("store", store.get("url")))
    if fault:
        fields.append(("store fault", f"{fault['message']} (since {fault.get('since')})"))
    print_fields(fields)
    instances = status.get("instances")
    if instances is None:
        print("instances: unknown while the store cannot be read")
        return
    print(f"live instances: {len(instances)}")
    for i in instances:
        here = " (this one)" if i["instance_id"] == status.get("instance_id") else ""
        print(
            f"  {i['instance_id']}{here} on {i['host']} (host id {i['host_id']}), pid {i['pid']}, "
            f"lease until {i['lease_until']}"
        )


def print_sessions(sessions: Sequence[dict[str, Any]]) -> None:
    if not sessions:
        print("no sessions")
        return
    rows = [
        [
            s["key"],
            s["status"],
            s.get("started_at"),
            None if s.get("runtime_ms") is None else f"{s['runtime_ms']}ms",
            s.get("stop_reason"),
            s.get("error"),
        ]
        for s in sessions
    ]
    table(["KEY", "STATUS", "STARTED", "RUNTIME", "STOP", "ERROR"], rows)


def print_session(session: dict[str, Any]) -> None:
    keys = [
        "key",
        "session_id",
        "job_id",
        "run_id",
        "status",
        "started_at",
        "ended_at",
        "runtime_ms",
        "error",
        "error_kind",
        "stop_reason",
    ]
    print_fields([(key, session.get(key)) for key in keys])
    for title, entries in (
        ("transcript", session.get("transcript_tail")),
        ("inbox", session.get("inbox_tail")),
    ):
        if entries:
            print(f"{title} (tail):")
            for entry in entries:
                who = entry.get("role") or entry.get("job_id") or ""
                text = str(entry.get("content") or entry.get("text") or "")
                print(f"  {entry.get('ts')}  {who}: {text}")


def print_event(event: dict[str, Any]) -> None:
    stream = event.get("stream")
    if stream == "gap":
        print(f"-- gap: {event.get('reason')} (missed from seq {event.get('missed_from_seq')})")
        return
    detail = event.get("status") if stream == "run" else event.get("session_key")
    extra = ""
    if event.get("error"):
        extra = f"  {event.get('error_kind')}: {event.get('error')}"
    print(
        f"{event.get('seq')}  {event.get('ts')}  {stream}.{event.get('phase')}  "
        f"{event.get('run_id')}  {detail}{extra}"
    )


_DST_MARKS = {"gap": "gap: its local time did not exist", "fold": "fold: the first of two"}


def print_upcoming(slots: Sequence[dict[str, Any]], *, now: datetime) -> None:
    """``cron next``: each slot in UTC and in its zone, from now, marked if DST moved it."""
    if not slots:
        print("no slot to come")
        return
    rows = []
    for slot in slots:
        at = parse_time(slot["at"])
        rows.append(
            [
                slot["at"],
                slot["local"],
                slot["utc_offset"],
                from_now((at - now).total_seconds()),
                _DST_MARKS.get(slot["dst"] or "", ""),
            ]
        )
    table(["at (UTC)", "local", "offset", "from now", "dst"], rows)


def from_now(seconds: float) -> str:
    """``in 5m`` or ``5m ago``: a time ``seconds`` from now, in words."""
    whole = format_duration(round(abs(seconds)))
    return f"in {whole}" if seconds >= 0 else f"{whole} ago"


def print_import(report: dict[str, Any]) -> None:
    """``gatewayd import``: what was read, then each job, what became of it and why."""
    summary = report["summary"]
    verb = "would import" if report["dry_run"] else "imported"
    print(f"read {report['system']} store ({report['store']}): {', '.join(report['paths'])}")
    for note in report["notes"]:
        print(f"  note: {note}")
    for job in report["jobs"]:
        schedule = job["job"] and schedule_text(job["job"]["schedule"])
        print(f"\n{job['name'] or '?'}  [{job['origin_id']}]  {job['outcome']}")
        if job["reason"]:
            print(f"  why: {job['reason']}")
        if job["job_id"]:
            print(f"  job: {job['job_id']}  {schedule}")
        if job["history_source"]:
            print(
                f"  history: {job['runs']} runs from {job['history_source']}, "
                f"{job['broken_lines']} lines that did not parse"
            )
        if job["runs_beyond_retention"]:
            print(f"  {job['runs_beyond_retention']} runs are beyond [gateway] history retention")
        for note in job["notes"]:
            print(f"  note: {note}")
        for item in job["left_behind"]:
            print(f"  not carried over: {item}")
    print(
        f"\n{verb} {summary['imported']} of {summary['jobs']} jobs and {summary['runs']} runs; "
        f"{summary['already_imported']} imported before, {summary['skipped']} skipped, "
        f"{summary['broken_lines']} history lines that did not parse"
    )
    if report["dry_run"]:
        print("dry run: nothing was changed")
