"""Job specs in their flat form, as CLI flags and ``[[jobs]]`` tables write them.

``cron = "*/5 * * * *"``, ``command = "backup.sh"``, ``timeout = "5m"`` and so on
become the JSON shape of DESIGN.md. Values are passed on as written: the
daemon validates them (see :mod:`gatewayd.jobspec`). This module stays light,
so that the CLI starts fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatewayd.errors import InvalidInput

JsonObject = dict[str, Any]

FLAT_KEYS = frozenset(
    {
        "name",
        "description",
        "cron",
        "tz",
        "every",
        "at",
        "command",
        "shell",
        "cwd",
        "env",
        "agent_message",
        "agent",
        "system_event",
        "timeout",
        "overlap",
        "catchup",
        "catchup_window",
        "retry",
        "retry_backoff",
        "retry_max_backoff",
        "stagger",
        "session",
        "enabled",
        "delete_after_run",
        "max_output",
        "leftovers",
        "alert",
        "alert_after",
        "alert_cooldown",
        "expect_success_within",
        "pause_after",
    }
)


def spec_from_flat(flat: Mapping[str, Any], *, what: str = "job") -> JsonObject:
    """A spec in the JSON shape from the flat form of the CLI flags and ``[[jobs]]``.

    Only the keys present are set, so the result also serves as a patch.
    """
    extra = sorted(set(flat) - FLAT_KEYS)
    if extra:
        raise InvalidInput(f"{what}: unknown key {extra[0]!r}")
    spec: JsonObject = {}
    if "name" in flat:
        spec["name"] = flat["name"]
    kinds = [k for k in ("cron", "every", "at") if flat.get(k) is not None]
    if len(kinds) > 1:
        raise InvalidInput(f"{what}: give only one of cron, every or at (got {', '.join(kinds)})")
    tz = flat.get("tz")
    if tz is not None and kinds and kinds != ["cron"]:
        raise InvalidInput(f"tz: a time zone goes only with cron, not with {kinds[0]}")
    if kinds == ["cron"]:
        spec["schedule"] = {"kind": "cron", "expr": flat["cron"]}
        if tz is not None:
            spec["schedule"]["tz"] = tz
    elif kinds == ["every"]:
        spec["schedule"] = {"kind": "every", "every_s": flat["every"]}
    elif kinds == ["at"]:
        spec["schedule"] = {"kind": "at", "at": flat["at"]}
    elif tz is not None:
        spec["schedule"] = {"tz": tz}
    payloads = [k for k in ("command", "shell", "agent_message", "system_event") if k in flat]
    if len(payloads) > 1:
        raise InvalidInput(
            f"{what}: give only one of command, shell, agent_message or system_event "
            f"(got {', '.join(payloads)})"
        )
    if payloads in (["command"], ["shell"]):
        payload: JsonObject = {"kind": "exec", payloads[0]: flat[payloads[0]]}
        for key in ("cwd", "env"):
            if key in flat:
                payload[key] = flat[key]
        spec["payload"] = payload
    elif payloads == ["agent_message"]:
        spec["payload"] = {"kind": "agent_turn", "message": flat["agent_message"]}
        if "agent" in flat:
            spec["payload"]["agent"] = flat["agent"]
    elif payloads == ["system_event"]:
        spec["payload"] = {"kind": "system_event", "text": flat["system_event"]}
    for flat_key, spec_key in (
        ("timeout", "timeout_s"),
        ("catchup_window", "catchup_window_s"),
        ("stagger", "stagger_s"),
        ("description", "description"),
        ("overlap", "overlap"),
        ("catchup", "catchup"),
        ("session", "session"),
        ("enabled", "enabled"),
        ("delete_after_run", "delete_after_run"),
        ("max_output", "max_output"),
        ("leftovers", "leftovers"),
        ("pause_after", "pause_after"),
    ):
        if flat_key in flat:
            spec[spec_key] = flat[flat_key]
    alerts: JsonObject = {}
    if "alert" in flat:
        sinks = flat["alert"]
        alerts["sinks"] = [sinks] if isinstance(sinks, str) else sinks
    for flat_key, alerts_key in (
        ("alert_after", "after"),
        ("alert_cooldown", "cooldown_s"),
        ("expect_success_within", "expect_success_within_s"),
    ):
        if flat_key in flat:
            alerts[alerts_key] = flat[flat_key]
    if alerts:
        spec["alerts"] = alerts
    retry: JsonObject = {}
    if "retry" in flat:
        retries = flat["retry"]
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInput(f"retry: expected a number of retries >= 0, got {retries!r}")
        retry["max_attempts"] = retries + 1
    if "retry_backoff" in flat:
        retry["backoff_s"] = flat["retry_backoff"]
    if "retry_max_backoff" in flat:
        retry["max_backoff_s"] = flat["retry_max_backoff"]
    if retry:
        spec["retry"] = retry
    return spec
