"""Durations and timestamps as users write them, and as gatewayd prints them.

Durations look like ``30s``, ``5m``, ``1h30m``, ``1d`` or ``250ms``; a bare number
means seconds. Timestamps are printed as ISO 8601 in UTC with a ``Z`` suffix.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from gatewayd.errors import InvalidInput

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text``; raises :class:`InvalidInput` naming ``what`` if it is not one."""
    if isinstance(text, bool):
        raise InvalidInput(f"{what}: expected a duration like 30s, 5m or 1h30m, got {text!r}")
    if isinstance(text, int | float):
        if text < 0 or not math.isfinite(text):
            raise InvalidInput(f"{what}: a duration must be a finite number >= 0, got {text!r}")
        return float(text)
    raw = text.strip().lower()
    if raw.startswith("-"):
        raise InvalidInput(f"{what}: a duration cannot be negative, got {text!r}")
    if _NUMBER.fullmatch(raw):
        return float(raw)
    pos = 0
    total = 0.0
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(raw):
        raise InvalidInput(
            f"{what}: cannot parse {text!r} as a duration; write it like 30s, 5m, 1h30m or 1d"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact form in the units users write: ``90`` -> ``1m30s``."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{seconds:g}s"
    rest = ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, or ``None``."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str, *, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO 8601; a value without an offset is taken as UTC."""
    raw = text.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            f"{what}: cannot parse {text!r} as an ISO 8601 time like 2026-01-31T09:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_when(text: str, *, now: datetime, what: str = "at") -> datetime:
    """A one-shot time: ISO 8601, or relative to ``now`` like ``+20m``."""
    raw = text.strip()
    if raw.startswith("+"):
        return now + timedelta(seconds=parse_duration(raw[1:], what=what))
    return parse_time(raw, what=what)
