"""One OpenClaw cron job into a gatewayd spec, field by field as OpenClaw defines them.

What gatewayd cannot carry over is named in ``left_behind``, never dropped in
silence; what was decided for the job (a zone taken from the host, a stuck
"running" flag not copied) goes into ``notes``. OpenClaw's runtime state
(``nextRunAtMs``, ``runningAtMs`` and the rest) is never copied: gatewayd
derives it from its own record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gatewayd.durations import format_duration, format_time, parse_time
from gatewayd.importers.openclaw.history import from_ms
from gatewayd.importers.plan import JsonObject, PlannedJob
from gatewayd.model import DEFAULT_AGENT

# Fields of a job that are its bookkeeping in OpenClaw, not settings.
_BOOKKEEPING = frozenset({"id", "jobId", "createdAtMs", "updatedAtMs", "state", "agentId"})
_MAPPED = frozenset(
    {"name", "description", "enabled", "schedule", "payload", "sessionTarget", "deleteAfterRun"}
)
_LEGACY_PAYLOAD = ("message", "text", "model", "thinking", "timeoutSeconds")
# Fields of an agent turn's payload that gatewayd carries over.
_TURN_FIELDS = frozenset({"kind", "message", "timeoutSeconds"})
# OpenClaw staggers top-of-hour cron expressions by up to this much, unless staggerMs says.
_DEFAULT_TOP_OF_HOUR_STAGGER = "5m"


class Refused(ValueError):
    """The job cannot be carried over at all: the message says why."""


@dataclass(slots=True)
class _Mapping:
    """A job being mapped: the spec so far and what is said about it."""

    raw: Mapping[str, Any]
    host_zone: str
    now: datetime
    spec: JsonObject = field(default_factory=dict)
    left_behind: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def unwrapped(raw: Any) -> Any:
    """A job wrapped in ``{"job": ...}`` or ``{"data": ...}`` (older stores), unwrapped."""
    while isinstance(raw, Mapping) and "schedule" not in raw:
        inner = raw.get("job", raw.get("data"))
        if not isinstance(inner, Mapping):
            break
        raw = inner
    return raw


def job_id_of(raw: Any) -> str | None:
    """The OpenClaw id of a job (``id``, or the legacy ``jobId``)."""
    if not isinstance(raw, Mapping):
        return None
    value = raw.get("id", raw.get("jobId"))
    return value if isinstance(value, str) and value.strip() else None


def _millis(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Refused(f"{what}: expected milliseconds, got {value!r}")
    return float(value)


def _time_of(value: Any, what: str) -> datetime:
    """An ``at``: ISO 8601 (UTC when it names no zone, as OpenClaw reads it) or milliseconds."""
    try:
        if isinstance(value, str):
            text = value.strip()
            has_zone = text.endswith(("Z", "z")) or "+" in text[10:] or "-" in text[10:]
            return parse_time(text if has_zone else f"{text}Z", what=what)
        return from_ms(value)
    except ValueError as exc:
        raise Refused(f"{what}: not a time: {value!r}") from exc


def _schedule_kind(schedule: Mapping[str, Any]) -> str:
    """The schedule's kind, inferred as OpenClaw does when it is missing."""
    kind = schedule.get("kind")
    if isinstance(kind, str) and kind:
        return kind.lower()
    if "at" in schedule or "atMs" in schedule:
        return "at"
    if "everyMs" in schedule:
        return "every"
    if "expr" in schedule or "cron" in schedule:
        return "cron"
    raise Refused("schedule: no kind, and none of at, atMs, everyMs or expr to infer it from")


def _top_of_hour(expr: str) -> bool:
    fields = expr.split()
    if len(fields) == 6:
        fields = fields[1:] if fields[0] == "0" else []
    return len(fields) == 5 and fields[0] == "0" and not fields[1].isdigit()


def _cron(m: _Mapping, schedule: Mapping[str, Any]) -> JsonObject:
    expr = schedule.get("expr", schedule.get("cron"))
    if not isinstance(expr, str) or not expr.strip():
        raise Refused("schedule.expr: missing")
    tz = schedule.get("tz")
    if not isinstance(tz, str) or not tz:
        tz = m.host_zone
        m.notes.append(f"its cron schedule names no zone: OpenClaw used the host's, {tz}")
    stagger = schedule.get("staggerMs")
    if stagger is not None:
        m.spec["stagger_s"] = _millis(stagger, "schedule.staggerMs") / 1000
    elif _top_of_hour(expr):
        m.notes.append(
            f"OpenClaw staggered this top-of-hour expression by up to "
            f"{_DEFAULT_TOP_OF_HOUR_STAGGER}; gatewayd runs it on the hour (set stagger_s "
            "to spread it)"
        )
    return {"kind": "cron", "expr": expr.strip(), "tz": tz}


def _every(m: _Mapping, schedule: Mapping[str, Any]) -> JsonObject:
    every = _millis(schedule.get("everyMs"), "schedule.everyMs") / 1000
    anchor = schedule.get("anchorMs")
    if anchor is None and m.raw.get("createdAtMs") is not None:
        anchor = m.raw["createdAtMs"]
        m.notes.append("its every schedule has no anchorMs: anchored at its creation")
    body: JsonObject = {"kind": "every", "every_s": every}
    if anchor is not None:
        body["anchor"] = format_time(_time_of(anchor, "schedule.anchorMs"))
    return body


def _at(m: _Mapping, schedule: Mapping[str, Any]) -> JsonObject:
    value = schedule.get("at", schedule.get("atMs"))
    at = _time_of(value, "schedule.at")
    if at <= m.now and m.raw.get("enabled", True) is not False:
        m.spec["enabled"] = False
        m.notes.append(f"its one-shot time {format_time(at)} has passed: imported disabled")
    return {"kind": "at", "at": format_time(at)}


def _schedule(m: _Mapping) -> None:
    schedule = m.raw.get("schedule")
    if not isinstance(schedule, Mapping):
        raise Refused("schedule: missing")
    kind = _schedule_kind(schedule)
    makers = {"cron": _cron, "every": _every, "at": _at}
    if kind not in makers:
        raise Refused(f"schedule.kind {kind!r}: gatewayd has cron, every and at")
    m.spec["schedule"] = makers[kind](m, schedule)


def _payload_body(m: _Mapping) -> Mapping[str, Any]:
    """The payload, with the legacy top-level ``message``/``text`` moved into it."""
    payload = m.raw.get("payload")
    if isinstance(payload, Mapping):
        return payload
    legacy = {k: m.raw[k] for k in _LEGACY_PAYLOAD if k in m.raw}
    if "message" in legacy:
        return {"kind": "agentTurn", **legacy}
    if "text" in legacy:
        return {"kind": "systemEvent", **legacy}
    raise Refused("payload: missing, and no legacy message or text")


def _agent_turn(m: _Mapping, payload: Mapping[str, Any]) -> JsonObject:
    message = payload.get("message")
    if not isinstance(message, str) or not message:
        raise Refused("payload.message: missing")
    agent = m.raw.get("agentId")
    body: JsonObject = {
        "kind": "agent_turn",
        "message": message,
        "agent": agent if isinstance(agent, str) and agent else DEFAULT_AGENT,
    }
    timeout = payload.get("timeoutSeconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise Refused(f"payload.timeoutSeconds: expected seconds, got {timeout!r}")
        m.spec["timeout_s"] = float(timeout)
    for key in sorted(set(payload) - _TURN_FIELDS):
        if payload[key] is not None:
            m.left_behind.append(f"payload.{key} ({_shown(payload[key])})")
    return body


def _system_event(m: _Mapping, payload: Mapping[str, Any]) -> JsonObject:
    text = payload.get("text")
    if not isinstance(text, str) or not text:
        raise Refused("payload.text: missing")
    for key in sorted(set(payload) - {"kind", "text"}):
        m.left_behind.append(f"payload.{key} ({_shown(payload[key])})")
    return {"kind": "system_event", "text": text}


def _payload(m: _Mapping) -> None:
    payload = _payload_body(m)
    kind = str(payload.get("kind", "")).lower()
    if kind == "agentturn":
        m.spec["payload"] = _agent_turn(m, payload)
    elif kind == "systemevent":
        m.spec["payload"] = _system_event(m, payload)
    else:
        raise Refused(
            f"payload.kind {payload.get('kind')!r}: gatewayd has no such payload "
            "(it carries systemEvent and agentTurn)"
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _session(m: _Mapping) -> None:
    target = m.raw.get("sessionTarget")
    if target is None:
        return
    if target in ("main", "isolated"):
        m.spec["session"] = target
    else:
        m.left_behind.append(f"sessionTarget {_shown(target)} (runs in an isolated session)")


def _delete_after_run(m: _Mapping) -> None:
    wanted = m.raw.get("deleteAfterRun")
    if m.spec["schedule"]["kind"] != "at":
        if wanted is True:
            m.left_behind.append("deleteAfterRun (gatewayd deletes only one-shot at jobs)")
        return
    if wanted is None:
        wanted = True
        m.notes.append("a one-shot job: deleted after its run, OpenClaw's default")
    if wanted:
        m.notes.append(
            "gatewayd deletes it after its run whatever the outcome (OpenClaw: after a success)"
        )
    m.spec["delete_after_run"] = wanted


def _delivery(m: _Mapping) -> None:
    delivery = m.raw.get("delivery")
    isolated_turn = m.spec["payload"]["kind"] == "agent_turn" and m.spec.get("session") != "main"
    if delivery is None and isolated_turn:
        m.left_behind.append("delivery: announce (OpenClaw's default for an isolated job)")
        return
    if isinstance(delivery, Mapping) and delivery.get("mode") in (None, "none"):
        return
    if isinstance(delivery, Mapping):
        where = " ".join(
            str(delivery[k]) for k in ("channel", "to", "accountId") if delivery.get(k)
        )
        m.left_behind.append(f"delivery: {delivery.get('mode')} {where}".rstrip())
    elif delivery is not None:
        m.left_behind.append(f"delivery {_shown(delivery)}")


def _failure_alert(m: _Mapping, sink: str | None) -> None:
    alert = m.raw.get("failureAlert")
    if alert is None or alert is False:
        return
    if not isinstance(alert, Mapping):
        alert = {}
    after = alert.get("after", 1)
    cooldown = alert.get("cooldownMs")
    wanted = f"after {after} failure(s)" + (
        ""
        if cooldown is None
        else f", every {format_duration(_millis(cooldown, 'cooldownMs') / 1000)}"
    )
    if alert.get("enabled") is False:
        m.left_behind.append(f"failureAlert ({wanted}): disabled in OpenClaw")
        return
    if sink is None:
        m.left_behind.append(f"failureAlert ({wanted}): name a sink with --alert-sink to carry it")
        return
    body: JsonObject = {"sinks": [sink], "after": after}
    if cooldown is not None:
        body["cooldown_s"] = _millis(cooldown, "failureAlert.cooldownMs") / 1000
    m.spec["alerts"] = body
    for key in sorted(set(alert) - {"after", "cooldownMs", "enabled"}):
        m.left_behind.append(f"failureAlert.{key} ({_shown(alert[key])})")


def _state(m: _Mapping, state: Mapping[str, Any] | None) -> None:
    running = (state or {}).get("runningAtMs")
    if running is not None:
        try:
            since = format_time(from_ms(running))
        except ValueError:
            since = _shown(running)
        m.notes.append(
            f"OpenClaw marked it running since {since} (runningAtMs, the stuck "
            "'already running' flag of OpenClaw #68157): not copied; gatewayd's runs say "
            "whether it runs"
        )


def _rest(m: _Mapping) -> None:
    """Name each field of the job that is neither mapped nor bookkeeping."""
    for key in sorted(set(m.raw) - _MAPPED - _BOOKKEEPING - set(_LEGACY_PAYLOAD)):
        if key in ("delivery", "failureAlert"):
            continue
        if m.raw[key] is not None:
            m.left_behind.append(f"{key} ({_shown(m.raw[key])})")
    if not isinstance(m.raw.get("payload"), Mapping):
        return
    for key in _LEGACY_PAYLOAD:
        if key in m.raw:
            m.left_behind.append(f"{key} at the top of the job, beside a payload")


def plan_job(
    raw: Any,
    state: Mapping[str, Any] | None,
    *,
    host_zone: str,
    alert_sink: str | None,
    now: datetime,
) -> PlannedJob:
    """The plan for one job of ``jobs.json`` (or a ``cron_jobs`` row) and its state."""
    raw = unwrapped(raw)
    origin_id = job_id_of(raw)
    if origin_id is None or not isinstance(raw, Mapping):
        return PlannedJob(origin_id="?", name=None, spec=None, refusal="a job without an id")
    name = raw.get("name")
    name = name if isinstance(name, str) else None
    m = _Mapping(raw=raw, host_zone=host_zone, now=now)
    try:
        if name is None:
            raise Refused("name: missing")
        m.spec["name"] = name
        if isinstance(raw.get("description"), str) and raw["description"]:
            m.spec["description"] = raw["description"]
        if "enabled" in raw:
            m.spec["enabled"] = raw["enabled"]
        _schedule(m)
        _payload(m)
        _session(m)
        _delete_after_run(m)
        _delivery(m)
        _failure_alert(m, alert_sink)
        _rest(m)
    except Refused as exc:
        return PlannedJob(origin_id=origin_id, name=name, spec=None, refusal=str(exc))
    _state(m, state if state is not None else _embedded_state(raw))
    return PlannedJob(
        origin_id=origin_id,
        name=name,
        spec=m.spec,
        left_behind=tuple(m.left_behind),
        notes=tuple(m.notes),
    )


def _embedded_state(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = raw.get("state")
    return state if isinstance(state, Mapping) else None
