"""The one place where values become JSON: the shapes of DESIGN.md.

Jobs, schedules, payloads, runs, sessions, the status and the answers of the
operations, for the RPC (and the store, which keeps a job's spec in the same
shape). These are the contracts scripts rely on: keys are never removed or renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gatewayd.alerting.values import Alert, AlertAttempt, AlertReason, AlertState
from gatewayd.api.values import (
    ImportOutcome,
    ImportReport,
    JobImport,
    JobState,
    LagProbe,
    RunRequest,
    SessionState,
    Status,
    StoreHealthReport,
    StreamEnd,
)
from gatewayd.durations import format_time, parse_time
from gatewayd.events import Event, JobEvent, LifecycleEvent, RunEvent
from gatewayd.model import (
    DEFAULT_AGENT,
    UTC_ZONE,
    AgentTurnPayload,
    AlertPolicy,
    Catchup,
    ExecPayload,
    Instance,
    Job,
    JobSource,
    LeftoverPolicy,
    LeftoverProcess,
    Leftovers,
    Origin,
    Overlap,
    Payload,
    RetryPolicy,
    Run,
    Schedule,
    ScheduleKind,
    Session,
    SessionTarget,
    Standing,
    StandingChange,
    SystemEventPayload,
)
from gatewayd.planning import Upcoming, next_run_at, zone
from gatewayd.why import Why

JsonObject = dict[str, Any]


def schedule_to_json(schedule: Schedule) -> JsonObject:
    return {
        "kind": schedule.kind.value,
        "expr": schedule.expr,
        "tz": schedule.tz,
        "every_s": schedule.every_s,
        "at": format_time(schedule.at),
        "anchor": format_time(schedule.anchor),
    }


def upcoming_to_json(slots: list[Upcoming], schedule: Schedule) -> list[JsonObject]:
    """``cron next``: each slot's firing in UTC and in the schedule's zone (a cron
    schedule's; UTC for the others), with its offset and its daylight-saving mark."""
    tz = zone(schedule.tz) if schedule.kind is ScheduleKind.CRON else UTC
    shown = []
    for slot in slots:
        local = slot.at.astimezone(tz)
        offset = local.utcoffset()
        assert offset is not None
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        shown.append(
            {
                "at": format_time(slot.at),
                "local": local.isoformat(
                    timespec="milliseconds" if local.microsecond else "seconds"
                ),
                "utc_offset": f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
                "dst": None if slot.dst is None else slot.dst.value,
            }
        )
    return shown


def payload_to_json(payload: Payload) -> JsonObject:
    if isinstance(payload, ExecPayload):
        return {
            "kind": payload.kind.value,
            "command": payload.command,
            "shell": payload.shell,
            "cwd": payload.cwd,
            "env": dict(payload.env),
        }
    if isinstance(payload, AgentTurnPayload):
        return {"kind": payload.kind.value, "message": payload.message, "agent": payload.agent}
    return {"kind": payload.kind.value, "text": payload.text}


def spec_to_json(job: Job) -> JsonObject:
    """The parts of a job a user sets: what ``cron.add`` takes and ``cron.update`` patches."""
    return {
        "name": job.name,
        "description": job.description,
        "enabled": job.enabled,
        "schedule": schedule_to_json(job.schedule),
        "payload": payload_to_json(job.payload),
        "timeout_s": job.timeout_s,
        "overlap": job.overlap.value,
        "catchup": job.catchup.value,
        "catchup_window_s": job.catchup_window_s,
        "stagger_s": job.stagger_s,
        "retry": {
            "max_attempts": job.retry.max_attempts,
            "backoff_s": job.retry.backoff_s,
            "max_backoff_s": job.retry.max_backoff_s,
        },
        "session": job.session.value,
        "delete_after_run": job.delete_after_run,
        "max_output": job.max_output,
        "leftovers": job.leftovers.value,
        "alerts": {
            "sinks": list(job.alerts.sinks),
            "after": job.alerts.after,
            "cooldown_s": job.alerts.cooldown_s,
            "expect_success_within_s": job.alerts.expect_success_within_s,
        },
        "pause_after": job.pause_after,
    }


def standing_to_json(change: Standing) -> JsonObject:
    return {
        "change": change.change.value,
        "at": format_time(change.at),
        "by": None if change.by is None else change.by.value,
        "failures": change.failures,
        "run_id": change.run_id,
    }


def standing_from_json(body: JsonObject) -> Standing:
    at = parse_time(body["at"])
    by = body.get("by")
    return Standing(
        change=StandingChange(body["change"]),
        at=at,
        by=None if by is None else JobSource(by),
        failures=body.get("failures"),
        run_id=body.get("run_id"),
    )


def stored_job_to_json(job: Job) -> JsonObject:
    """What a store keeps of a job beyond its columns: its spec and its standing."""
    body = spec_to_json(job)
    body["standing"] = [standing_to_json(change) for change in job.standing]
    return body


def _pause_to_json(job: Job) -> JsonObject | None:
    pause = job.paused
    if pause is None:
        return None
    return {"at": format_time(pause.at), "failures": pause.failures, "run_id": pause.run_id}


def _disabled_to_json(job: Job) -> JsonObject | None:
    if job.enabled:
        return None
    change = job.disabled
    if change is None:
        return {"at": None, "by": None}
    return {"at": format_time(change.at), "by": None if change.by is None else change.by.value}


def job_to_json(state: JobState) -> JsonObject:
    """A job in the shape of DESIGN.md, with its derived fields."""
    job, running_run_id, last_run = state.job, state.running_run_id, state.last_run
    body: JsonObject = {"id": job.id}
    body.update(spec_to_json(job))
    body.update(
        {
            "source": job.source.value,
            "next_run_at": format_time(next_run_at(job)),
            "running_run_id": running_run_id,
            "last_run": run_to_json(last_run) if last_run is not None else None,
            "paused": _pause_to_json(job),
            "disabled": _disabled_to_json(job),
            "created_at": format_time(job.created_at),
            "updated_at": format_time(job.updated_at),
            "origin": origin_to_json(job.origin),
        }
    )
    return body


def origin_to_json(origin: Origin | None) -> JsonObject | None:
    """``{"system", "id"}`` of an imported job, or ``None``."""
    return None if origin is None else {"system": origin.system, "id": origin.id}


def run_to_json(run: Run) -> JsonObject:
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "job_name": run.job_name,
        "trigger": run.trigger.value,
        "status": run.status.value,
        "scheduled_for": format_time(run.scheduled_for),
        "queued_at": format_time(run.queued_at),
        "started_at": format_time(run.started_at),
        "ended_at": format_time(run.ended_at),
        "duration_ms": run.duration_ms,
        "exit_code": run.exit_code,
        "error": run.error,
        "error_kind": run.error_kind.value if run.error_kind else None,
        "stop_reason": run.stop_reason,
        "session_key": run.session_key,
        "attempt": run.attempt,
        "summary": run.summary,
        "output_tail": run.output_tail,
        "owner": run.owner,
        "pid": run.pid,
        "leftovers": leftovers_to_json(run.leftovers),
        "imported": run.imported,
    }


def leftovers_to_json(leftovers: Leftovers | None) -> JsonObject | None:
    """``{"policy": "kill"|"keep", "processes": [{"pid", "command"}]}``, or ``None``."""
    if leftovers is None:
        return None
    return {
        "policy": leftovers.policy.value,
        "processes": [{"pid": p.pid, "command": p.command} for p in leftovers.processes],
    }


def leftovers_from_json(body: Any) -> Leftovers | None:
    """The leftovers of a run from the JSON :func:`leftovers_to_json` wrote."""
    if not isinstance(body, dict):
        return None
    return Leftovers(
        policy=LeftoverPolicy(body["policy"]),
        processes=tuple(
            LeftoverProcess(pid=int(p["pid"]), command=str(p["command"])) for p in body["processes"]
        ),
    )


def _stored_time(value: Any) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None


def job_from_stored(
    body: JsonObject,
    *,
    job_id: str,
    source: JobSource,
    next_slot: datetime | None,
    created_at: datetime,
    updated_at: datetime,
    origin: Origin | None = None,
) -> Job:
    """A job from the spec JSON this module wrote: trusted, so not validated again.

    Start-up reads every job; this is several times faster than validating.
    """
    schedule = body["schedule"]
    retry = {k: v for k, v in (body.get("retry") or {}).items() if v is not None}
    # Only what the spec holds: a field it lacks takes the Job's own default.
    policies = {
        key: convert(body[key]) for key, convert in _STORED_POLICIES if body.get(key) is not None
    }
    return Job(
        id=job_id,
        name=body["name"],
        schedule=Schedule(
            kind=ScheduleKind(schedule["kind"]),
            expr=schedule.get("expr"),
            tz=schedule.get("tz") or UTC_ZONE,
            every_s=schedule.get("every_s"),
            at=_stored_time(schedule.get("at")),
            anchor=_stored_time(schedule.get("anchor")),
        ),
        payload=payload_from_stored(body["payload"]),
        retry=RetryPolicy(**retry),
        alerts=_alerts_from_stored(body.get("alerts")),
        standing=tuple(standing_from_json(c) for c in body.get("standing") or ()),
        origin=origin,
        source=source,
        next_slot=next_slot,
        created_at=created_at,
        updated_at=updated_at,
        **policies,
    )


def _alerts_from_stored(body: JsonObject | None) -> AlertPolicy:
    if not body:
        return AlertPolicy()
    defaults = AlertPolicy()
    return AlertPolicy(
        sinks=tuple(body.get("sinks") or ()),
        after=body.get("after") or defaults.after,
        cooldown_s=body.get("cooldown_s", defaults.cooldown_s),
        expect_success_within_s=body.get("expect_success_within_s"),
    )


def _same(value: Any) -> Any:
    return value


_STORED_POLICIES: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("description", _same),
    ("enabled", _same),
    ("timeout_s", _same),
    ("overlap", Overlap),
    ("catchup", Catchup),
    ("catchup_window_s", _same),
    ("stagger_s", _same),
    ("session", SessionTarget),
    ("delete_after_run", _same),
    ("max_output", _same),
    ("leftovers", LeftoverPolicy),
    ("pause_after", _same),
)


def payload_from_stored(body: JsonObject) -> Payload:
    """A payload from the JSON this module wrote; trusted input, not validated again."""
    kind = body["kind"]
    if kind == "exec":
        return ExecPayload(
            command=body.get("command"),
            shell=body.get("shell"),
            cwd=body.get("cwd"),
            env=tuple(sorted((body.get("env") or {}).items())),
        )
    if kind == "agent_turn":
        return AgentTurnPayload(message=body["message"], agent=body.get("agent") or DEFAULT_AGENT)
    return SystemEventPayload(text=body["text"])


def session_to_json(session: Session) -> JsonObject:
    return {
        "key": session.key,
        "session_id": session.session_id,
        "job_id": session.job_id,
        "run_id": session.run_id,
        "status": session.status.value,
        "started_at": format_time(session.started_at),
        "ended_at": format_time(session.ended_at),
        "runtime_ms": session.runtime_ms,
        "error": session.error,
        "error_kind": session.error_kind.value if session.error_kind else None,
        "stop_reason": session.stop_reason,
    }


def session_state_to_json(state: SessionState) -> JsonObject:
    """A session with the tails of its transcript (and, for ``main``, of its inbox)."""
    session = state.session
    body: JsonObject = (
        session_to_json(session)
        if session is not None
        else {"key": state.key, "session_id": None, "status": None}
    )
    body["transcript_tail"] = state.transcript_tail
    if state.inbox_tail is not None:
        body["inbox_tail"] = state.inbox_tail
    return body


def run_request_to_json(request: RunRequest) -> JsonObject:
    """``{"ok", "ran", "run_id"}``, or why not: ``already-running`` (with the live run) or
    ``not-due``."""
    if request.ran:
        assert request.run is not None
        return {"ok": True, "ran": True, "run_id": request.run.run_id}
    body: JsonObject = {
        "ok": True,
        "ran": False,
        "reason": None if request.reason is None else request.reason.value,
    }
    live = request.run
    if live is not None:
        body["run_id"] = live.run_id
        body["running_since"] = format_time(live.started_at or live.queued_at)
    return body


def store_health_to_json(report: StoreHealthReport) -> JsonObject:
    fault = report.fault
    return {
        **report.counters,
        "writable": fault is None,
        "fault": None
        if fault is None
        else {"kind": fault.kind, "message": fault.message, "since": format_time(report.since)},
        "held_writes": report.held_writes,
    }


def instance_to_json(instance: Instance) -> JsonObject:
    return {
        "instance_id": instance.instance_id,
        "host": instance.host,
        "host_id": instance.host_id,
        "pid": instance.pid,
        "started_at": format_time(instance.started_at),
        "heartbeat_at": format_time(instance.heartbeat_at),
        "lease_until": format_time(instance.lease_until),
    }


def status_to_json(status: Status) -> JsonObject:
    ident = status.identity
    runs = status.runs
    return {
        "version": status.version,
        "instance_id": ident.instance_id,
        "pid": ident.pid,
        "host": ident.host,
        "host_id": ident.host_id,
        "state_dir": str(ident.state_dir),
        "socket": str(ident.socket_path),
        "started_at": format_time(ident.started_at),
        "now": format_time(status.now),
        "jobs": {"total": status.jobs_total, "enabled": status.jobs_enabled},
        "runs": {
            "total": None if runs is None else runs.total,
            "by_status": {} if runs is None else {s.value: n for s, n in runs.by_status},
            "active": status.active_runs,
        },
        "instances": None
        if status.instances is None
        else [instance_to_json(i) for i in status.instances],
        "next_wake_at": format_time(status.next_wake_at),
        "event_subscribers": status.event_subscribers,
        "store": {"url": ident.store, **store_health_to_json(status.store)},
        "log_lines_dropped": status.log_lines_dropped,
    }


def lag_probe_to_json(probe: LagProbe) -> JsonObject:
    if not probe.samples:
        return {"samples": 0}
    return {
        "samples": probe.samples,
        "p50_ms": probe.p50_ms,
        "p99_ms": probe.p99_ms,
        "max_ms": probe.max_ms,
    }


def jobs_added_to_json(jobs: list[Job]) -> JsonObject:
    return {"ok": True, "added": [{"id": j.id, "name": j.name} for j in jobs]}


def job_removed_to_json(job: Job) -> JsonObject:
    return {"ok": True, "removed": job.id, "name": job.name}


def stream_end_to_json(end: StreamEnd) -> JsonObject:
    body: JsonObject = {"last_seq": end.last_seq, "follow": end.follow}
    if end.follow:
        body["dropped"] = end.dropped
    return body


def event_to_json(event: Event) -> JsonObject:
    """An event's body, as stored and sent (the store adds its ``seq``)."""
    body: JsonObject = {"ts": format_time(event.ts), "stream": event.stream, "phase": event.phase}
    if isinstance(event, LifecycleEvent):
        body.update(
            run_id=event.run_id,
            job_id=event.job_id,
            session_key=event.session_key,
            session_id=event.session_id,
            error=event.error,
            error_kind=None if event.error_kind is None else event.error_kind.value,
            stop_reason=None if event.stop_reason is None else event.stop_reason.value,
        )
    elif isinstance(event, RunEvent):
        body.update(
            run_id=event.run_id,
            job_id=event.job_id,
            job_name=event.job_name,
            status=event.status.value,
            trigger=event.trigger,
        )
    elif isinstance(event, JobEvent):
        body.update(
            job_id=event.job_id,
            name=event.name,
            source=event.source.value,
            instance=event.instance,
        )
    return body


# --- alerts ---------------------------------------------------------------------------


def alert_message_to_json(alert: Alert) -> JsonObject:
    """What a sink gets: the alert, without how its delivery stands."""
    return {
        "alert_id": alert.alert_id,
        "reason": alert.reason.value,
        "job": {"id": alert.job_id, "name": alert.job_name},
        "run_ids": list(alert.run_ids),
        "streak": alert.streak,
        "message": alert.message,
        "raised_at": format_time(alert.raised_at),
        "host": alert.host,
        "instance": alert.instance,
        "sink": alert.sink,
    }


def alert_to_json(alert: Alert) -> JsonObject:
    """An alert with its delivery: ``gatewayd alerts``, and what a store keeps of it."""
    body = alert_message_to_json(alert)
    body.update(
        {
            "key": alert.key,
            "state": alert.state.value,
            "next_attempt_at": format_time(alert.next_attempt_at),
            "delivered_at": format_time(alert.delivered_at),
            "error": alert.last_error,
            "attempts": [
                {
                    "number": a.number,
                    "at": format_time(a.at),
                    "duration_ms": a.duration_ms,
                    "error": a.error,
                }
                for a in alert.attempts
            ],
        }
    )
    return body


def alert_from_json(body: JsonObject) -> Alert:
    """An alert from the JSON :func:`alert_to_json` wrote (a store's own: trusted)."""
    return Alert(
        alert_id=body["alert_id"],
        key=body["key"],
        sink=body["sink"],
        reason=AlertReason(body["reason"]),
        job_id=body["job"]["id"],
        job_name=body["job"]["name"],
        run_ids=tuple(body["run_ids"]),
        streak=body.get("streak"),
        message=body["message"],
        raised_at=parse_time(body["raised_at"]),
        host=body["host"],
        instance=body["instance"],
        state=AlertState(body["state"]),
        next_attempt_at=_stored_time(body.get("next_attempt_at")),
        delivered_at=_stored_time(body.get("delivered_at")),
        attempts=tuple(
            AlertAttempt(
                number=a["number"],
                at=parse_time(a["at"]),
                duration_ms=a["duration_ms"],
                error=a.get("error"),
            )
            for a in body.get("attempts") or ()
        ),
    )


# --- cron why -------------------------------------------------------------------------


def why_to_json(why: Why) -> JsonObject:
    """``cron why``: the job's slots since ``since``, what became of each, and what is next."""
    return {
        "job": {"id": why.job.id, "name": why.job.name},
        "since": format_time(why.since),
        "now": format_time(why.now),
        "slots": [
            {
                "kind": entry.kind.value,
                "slot": format_time(entry.slot),
                "at": format_time(entry.at),
                "fate": entry.fate.value,
                "run_id": None if entry.run is None else entry.run.run_id,
                "status": None if entry.run is None else entry.run.status.value,
                "detail": entry.detail,
                "held_by": entry.held_by,
                "no_instance": None
                if entry.absence is None
                else {
                    "since": format_time(entry.absence.since),
                    "until": format_time(entry.absence.until),
                },
            }
            for entry in why.entries
        ],
        "truncated": why.truncated,
        "next": None if why.next is None else upcoming_to_json([why.next], why.job.schedule)[0],
        "blocked": _blocked_to_json(why),
        "summary": why.summary,
    }


def _blocked_to_json(why: Why) -> JsonObject | None:
    """What stops the job's slots: its pause, or its disabling (``since`` unknown when it
    was disabled before such changes were recorded)."""
    blocked = why.blocked
    if blocked is None:
        if why.job.enabled:
            return None
        return {"reason": "disabled", "since": None, "by": None, "failures": None, "run_id": None}
    return {
        "reason": blocked.change.value,
        "since": format_time(blocked.at),
        "by": None if blocked.by is None else blocked.by.value,
        "failures": blocked.failures,
        "run_id": blocked.run_id,
    }


def _job_import_to_json(item: JobImport) -> JsonObject:
    planned, job = item.planned, item.job
    history = planned.history
    return {
        "origin_id": planned.origin_id,
        "name": planned.name,
        "outcome": item.outcome.value,
        "reason": item.reason,
        "job_id": None if job is None else job.id,
        "job": None if job is None else spec_to_json(job),
        "runs": len(item.kept),
        "runs_beyond_retention": item.beyond_retention,
        "broken_lines": history.broken,
        "history_source": history.source,
        "left_behind": list(planned.left_behind),
        "notes": list(planned.notes),
    }


def import_report_to_json(report: ImportReport) -> JsonObject:
    """What an import did (or, dry, would do), job by job."""
    plan, jobs = report.plan, report.jobs
    done = ImportOutcome.WOULD_IMPORT if report.dry_run else ImportOutcome.IMPORTED
    return {
        "ok": True,
        "dry_run": report.dry_run,
        "system": plan.system,
        "store": plan.store,
        "paths": list(plan.paths),
        "notes": list(plan.notes),
        "retention": {
            "history_per_job": report.retention.keep_per_job,
            "history_max_age_s": report.retention.max_age_s,
        },
        "summary": {
            "jobs": len(jobs),
            "imported": report.count(done),
            "already_imported": report.count(ImportOutcome.ALREADY_IMPORTED),
            "skipped": report.count(ImportOutcome.NAME_TAKEN, ImportOutcome.NOT_CARRIED),
            "runs": sum(len(j.kept) for j in jobs if j.outcome is done),
            "runs_beyond_retention": sum(j.beyond_retention for j in jobs if j.outcome is done),
            "broken_lines": sum(j.planned.history.broken for j in jobs),
        },
        "jobs": [_job_import_to_json(j) for j in jobs],
    }
