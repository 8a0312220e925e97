"""Job specifications from users, scripts and the config file, validated.

A spec is the JSON shape of a job without the fields the daemon owns. Every
problem is reported as :class:`InvalidInput` naming the field, before anything
is stored. The config file and the CLI write specs in a flat form
(``cron = "..."``, ``command = "..."``), turned into the JSON shape by
:func:`spec_from_flat`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from gatewayd import bounds
from gatewayd.alerting.values import SINK_NAME
from gatewayd.durations import (
    parse_duration,
    parse_size,
    parse_time,
    parse_when,
    to_milliseconds,
)
from gatewayd.errors import InvalidInput
from gatewayd.model import (
    DEFAULT_AGENT,
    UTC_ZONE,
    AgentTurnPayload,
    AlertPolicy,
    Catchup,
    ExecPayload,
    Job,
    JobSource,
    LeftoverPolicy,
    Overlap,
    Payload,
    PayloadKind,
    RetryPolicy,
    Schedule,
    ScheduleKind,
    SessionTarget,
    SystemEventPayload,
)
from gatewayd.planning import next_slot, validate_cron, zone
from gatewayd.views import JsonObject, spec_to_json

MAX_NAME_LEN = 100
MAX_DESCRIPTION_LEN = 4096
MAX_TEXT_LEN = 256 * 1024

# Fields a job's JSON carries that the daemon owns: accepted and ignored in input,
# so that the output of `cron get` can be fed back.
DAEMON_OWNED = frozenset(
    {
        "id",
        "next_run_at",
        "running_run_id",
        "last_run",
        "source",
        "created_at",
        "updated_at",
        "paused",
        "disabled",
        "standing",
        "origin",
    }
)
SPEC_FIELDS = frozenset(
    {
        "name",
        "description",
        "enabled",
        "schedule",
        "payload",
        "timeout_s",
        "overlap",
        "catchup",
        "catchup_window_s",
        "stagger_s",
        "retry",
        "session",
        "delete_after_run",
        "max_output",
        "leftovers",
        "alerts",
        "pause_after",
    }
)

E = TypeVar("E")


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _string(value: Any, what: str, *, max_len: int = MAX_TEXT_LEN) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{what}: must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what}: longer than {max_len} characters")
    return value


def _process_text(value: Any, what: str, *, max_len: int = MAX_TEXT_LEN) -> str:
    """A string that reaches a process (an argument, a directory, an environment value)."""
    text = _string(value, what, max_len=max_len)
    if "\0" in text:
        raise InvalidInput(f"{what}: must not contain a NUL character, which no process can take")
    return text


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{what}: expected true or false, got {value!r}")
    return value


def _choice(value: Any, what: str, enum: type[E]) -> E:
    options = [m.value for m in enum]  # type: ignore[attr-defined]
    if value not in options:
        raise InvalidInput(f"{what}: expected one of {', '.join(options)}, got {value!r}")
    return enum(value)  # type: ignore[call-arg]


def _unknown(body: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise InvalidInput(f"{what}: unknown field {extra[0]!r}")


def _duration(value: Any, what: str, span: bounds.Span) -> float:
    return span.check(parse_duration(value, what=what), what)


def _time(value: Any, what: str, *, now: datetime | None = None) -> datetime:
    """A time in range: ISO 8601, or (given ``now``) relative like ``+20m``."""
    if now is None:
        return bounds.check_time(parse_time(value, what=what), what)
    return bounds.check_time(parse_when(value, now=now, what=what), what)


def _zone_name(body: Mapping[str, Any], kind: ScheduleKind, *, trusted: bool) -> str:
    """The schedule's zone: an IANA name for cron; other kinds take none but UTC."""
    tz = body.get("tz")
    if tz is None:
        return UTC_ZONE
    name = _string(tz, "schedule.tz", max_len=100)
    if trusted:
        return name
    zone(name)
    if kind is not ScheduleKind.CRON and name != UTC_ZONE:
        raise InvalidInput(
            f"schedule.tz: a time zone applies only to cron schedules, not to {kind.value}"
        )
    return name


def _schedule(
    body: Any, *, now: datetime | None, trusted: bool, allow_past_at: bool = False
) -> Schedule:
    if body is None:
        raise InvalidInput("schedule: missing; give one of cron, every or at")
    body = _object(body, "schedule")
    _unknown(body, frozenset({"kind", "expr", "tz", "every_s", "at", "anchor"}), "schedule")
    kind = _choice(body.get("kind"), "schedule.kind", ScheduleKind)
    tz = _zone_name(body, kind, trusted=trusted)
    if kind is ScheduleKind.CRON:
        expr = _string(body.get("expr"), "schedule.expr", max_len=200).strip()
        if not trusted:
            validate_cron(expr)
        return Schedule(kind=kind, expr=expr, tz=tz)
    if kind is ScheduleKind.EVERY:
        every = _duration(body.get("every_s"), "schedule.every_s", bounds.EVERY)
        raw_anchor = body.get("anchor")
        # Cut to the millisecond, as the job's JSON keeps it: the slots walked from the
        # stored job are the slots walked from this one.
        anchor = _time(raw_anchor, "schedule.anchor") if raw_anchor is not None else now
        anchor = None if anchor is None else to_milliseconds(anchor)
        if anchor is None:
            raise InvalidInput("schedule.anchor: an every schedule needs an anchor")
        return Schedule(kind=kind, every_s=every, tz=tz, anchor=anchor)
    raw_at = _string(body.get("at"), "schedule.at", max_len=100)
    at = to_milliseconds(_time(raw_at, "schedule.at", now=now))
    if not trusted and not allow_past_at and now is not None and at <= now:
        raise InvalidInput(f"schedule.at: {raw_at!r} is in the past (now is {now.isoformat()})")
    return Schedule(kind=kind, at=at, tz=tz)


def schedule_from_spec(body: Any, *, now: datetime) -> Schedule:
    """A schedule on its own (``cron next --cron``), checked as a job's is."""
    return _schedule(body, now=now, trusted=False, allow_past_at=True)


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    body = _object(value, "payload.env")
    pairs = []
    for key, item in body.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidInput(f"payload.env: invalid variable name {key!r}")
        if not isinstance(item, str):
            raise InvalidInput(f"payload.env.{key}: expected a string, got {type(item).__name__}")
        if "\0" in item:
            raise InvalidInput(f"payload.env.{key}: must not contain a NUL character")
        pairs.append((key, item))
    return tuple(sorted(pairs))


def _payload(body: Any) -> Payload:
    if body is None:
        raise InvalidInput(
            "payload: missing; give a command, a shell script, an agent message or a system event"
        )
    body = _object(body, "payload")
    kind = _choice(body.get("kind"), "payload.kind", PayloadKind)
    if kind is PayloadKind.EXEC:
        _unknown(body, frozenset({"kind", "command", "shell", "cwd", "env"}), "payload")
        command, shell = body.get("command"), body.get("shell")
        if (command is None) == (shell is None):
            raise InvalidInput("payload: an exec payload needs exactly one of command or shell")
        if command is not None:
            command = _process_text(command, "payload.command")
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                raise InvalidInput(f"payload.command: cannot split {command!r}: {exc}") from None
            if not argv:
                raise InvalidInput("payload.command: names no program")
        else:
            shell = _process_text(shell, "payload.shell")
        cwd = body.get("cwd")
        if cwd is not None:
            cwd = _process_text(cwd, "payload.cwd", max_len=4096)
        return ExecPayload(command=command, shell=shell, cwd=cwd, env=_env(body.get("env")))
    if kind is PayloadKind.AGENT_TURN:
        _unknown(body, frozenset({"kind", "message", "agent"}), "payload")
        agent = body.get("agent")
        agent = DEFAULT_AGENT if agent is None else _string(agent, "payload.agent", max_len=100)
        if any(ord(c) < 32 for c in agent):
            raise InvalidInput(f"payload.agent: {agent!r} must not contain control characters")
        return AgentTurnPayload(
            message=_string(body.get("message"), "payload.message"), agent=agent
        )
    _unknown(body, frozenset({"kind", "text"}), "payload")
    return SystemEventPayload(text=_string(body.get("text"), "payload.text"))


def _retry(value: Any) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    body = _object(value, "retry")
    _unknown(body, frozenset({"max_attempts", "backoff_s", "max_backoff_s"}), "retry")
    attempts = bounds.RETRY_ATTEMPTS.check(body.get("max_attempts", 1), "retry.max_attempts")
    defaults = RetryPolicy()
    return RetryPolicy(
        max_attempts=attempts,
        backoff_s=_duration(
            body.get("backoff_s", defaults.backoff_s), "retry.backoff_s", bounds.RETRY_BACKOFF
        ),
        max_backoff_s=_duration(
            body.get("max_backoff_s", defaults.max_backoff_s),
            "retry.max_backoff_s",
            bounds.RETRY_MAX_BACKOFF,
        ),
    )


def _alerts(value: Any) -> AlertPolicy:
    if value is None:
        return AlertPolicy()
    body = _object(value, "alerts")
    _unknown(body, frozenset({"sinks", "after", "cooldown_s", "expect_success_within_s"}), "alerts")
    defaults = AlertPolicy()
    raw = body.get("sinks") or []
    if not isinstance(raw, list):
        raise InvalidInput(f"alerts.sinks: expected a list of sink names, got {raw!r}")
    bounds.ALERT_SINKS.check(len(raw), "alerts.sinks (how many)")
    sinks: list[str] = []
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not SINK_NAME.fullmatch(name):
            raise InvalidInput(
                f"alerts.sinks[{index}]: {name!r} is not a sink name "
                "(letters, digits, '_', '.', '-')"
            )
        if name not in sinks:
            sinks.append(name)
    within = body.get("expect_success_within_s")
    return AlertPolicy(
        sinks=tuple(sinks),
        after=bounds.ALERT_AFTER.check(body.get("after", defaults.after), "alerts.after"),
        cooldown_s=_duration(
            body.get("cooldown_s", defaults.cooldown_s), "alerts.cooldown_s", bounds.ALERT_COOLDOWN
        ),
        expect_success_within_s=None
        if within is None
        else _duration(within, "alerts.expect_success_within_s", bounds.EXPECT_SUCCESS_WITHIN),
    )


def _description(value: Any, what: str) -> str:
    return _string(value, what, max_len=MAX_DESCRIPTION_LEN)


def _pause_after(value: Any, what: str) -> int:
    return bounds.PAUSE_AFTER.check(value, what)


def _max_output(value: Any, what: str) -> int:
    return bounds.MAX_OUTPUT.check(parse_size(value, what=what), what)


def _span(span: bounds.Span) -> Callable[[Any, str], float]:
    return lambda value, what: _duration(value, what, span)


def _one_of(enum: type[E]) -> Callable[[Any, str], E]:
    return lambda value, what: _choice(value, what, enum)


# Each policy a spec may set, with the check that turns its value into the Job's.
_POLICY_CHECKS: tuple[tuple[str, Callable[[Any, str], Any]], ...] = (
    ("description", _description),
    ("enabled", _bool),
    ("timeout_s", _span(bounds.TIMEOUT)),
    ("overlap", _one_of(Overlap)),
    ("catchup", _one_of(Catchup)),
    ("catchup_window_s", _span(bounds.CATCHUP_WINDOW)),
    ("stagger_s", _span(bounds.STAGGER)),
    ("session", _one_of(SessionTarget)),
    ("delete_after_run", _bool),
    ("max_output", _max_output),
    ("leftovers", _one_of(LeftoverPolicy)),
    ("pause_after", _pause_after),
)


def _name(value: Any) -> str:
    name = _string(value, "name", max_len=MAX_NAME_LEN)
    if name != name.strip() or any(ord(c) < 32 for c in name) or name.startswith("-"):
        raise InvalidInput(
            f"name: {name!r} must not start with '-' or contain control characters "
            "or leading or trailing spaces"
        )
    return name


def job_from_spec(
    body: Any,
    *,
    job_id: str,
    source: JobSource,
    now: datetime | None,
    created_at: datetime,
    updated_at: datetime,
    next_slot_value: datetime | None = None,
    trusted: bool = False,
    keep_schedule: Schedule | None = None,
    allow_past_at: bool = False,
) -> Job:
    """A :class:`Job` from a spec in the JSON shape.

    Untrusted specs (``trusted=False``) are checked in full; ``now`` resolves a
    relative ``at`` and anchors an ``every`` schedule. Trusted specs are the
    store's own and skip the checks that cost time or depend on the present.
    ``keep_schedule`` is used as is instead of the spec's schedule, for an edit
    that leaves the schedule alone. ``allow_past_at`` accepts a one-shot time
    that has passed (a declared job that already fired).
    """
    body = _object(body, "job")
    _unknown(body, SPEC_FIELDS | DAEMON_OWNED, "job")
    if keep_schedule is not None:
        schedule = keep_schedule
    else:
        schedule = _schedule(
            body.get("schedule"), now=now, trusted=trusted, allow_past_at=allow_past_at
        )
    # Only what the spec sets: a field it leaves out takes the Job's own default.
    policies = {
        key: check(body[key], key) for key, check in _POLICY_CHECKS if body.get(key) is not None
    }
    job = Job(
        id=job_id,
        name=_name(body.get("name")),
        schedule=schedule,
        payload=_payload(body.get("payload")),
        retry=_retry(body.get("retry")),
        alerts=_alerts(body.get("alerts")),
        source=source,
        next_slot=next_slot_value,
        created_at=created_at,
        updated_at=updated_at,
        **policies,
    )
    if job.delete_after_run and schedule.kind is not ScheduleKind.AT:
        raise InvalidInput("delete_after_run: applies only to one-shot at schedules")
    checks_cron = not trusted and keep_schedule is None and schedule.kind is ScheduleKind.CRON
    if checks_cron and now is not None and next_slot(schedule, now) is None:
        raise InvalidInput(f"schedule.expr: {schedule.expr!r} never fires")
    return job


def patched_spec(job: Job, patch: Any) -> JsonObject:
    """The spec of ``job`` with ``patch`` applied.

    ``schedule``, ``payload`` and ``retry`` merge key by key when the patch keeps
    their kind, and are replaced when it names another kind. An exec payload
    holds one of ``command`` and ``shell``: setting one clears the other. A
    patched schedule is anchored again at the time of the edit.
    """
    patch = _object(patch, "patch")
    _unknown(patch, SPEC_FIELDS, "patch")
    spec = spec_to_json(job)
    for key, change in patch.items():
        current = spec.get(key)
        value = change
        if isinstance(change, Mapping) and isinstance(current, dict):
            if "kind" in change and change["kind"] != current.get("kind"):
                merged = dict(change)
                if key == "schedule":
                    merged.setdefault("tz", current["tz"])
            else:
                merged = {**current, **change}
                if key == "payload" and current.get("kind") == "exec":
                    for one, other in (("command", "shell"), ("shell", "command")):
                        if one in change and other not in change:
                            merged[other] = None
            if key == "schedule":
                merged.pop("anchor", None)
            value = merged
        spec[key] = value
    return spec
