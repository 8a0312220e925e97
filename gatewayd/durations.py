"""Durations, sizes and timestamps as users write them, and as gatewayd prints them.

Durations look like ``30s``, ``5m``, ``1h30m``, ``1d`` or ``250ms``; a bare number
means seconds. Sizes look like ``512KiB``, ``16MiB`` or ``1GiB`` (``K``, ``M`` and
``G`` mean the same); a bare number means bytes. Timestamps are printed as ISO
8601 in UTC with a ``Z`` suffix.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from gatewayd.errors import InvalidInput

HOUR = 3600.0
DAY = 86400.0
YEAR = 365 * DAY
# No duration anywhere may exceed this: longer ones overflow the calendar.
MAX_DURATION_S = 100 * YEAR
_MAX_TEXT = 100

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _bounded(seconds: float, text: object, what: str) -> float:
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise InvalidInput(
            f"{what}: a duration must be at most 100 years, got {_short(text)}",
            data={"field": what},
        )
    return seconds


def _unparsable(text: object, what: str) -> InvalidInput:
    return InvalidInput(
        f"{what}: cannot parse {_short(text)} as a duration; write it like 30s, 5m, 1h30m or 1d",
        data={"field": what},
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(text: object, *, what: str = "duration") -> float:
    """Seconds in ``text``; raises :class:`InvalidInput` naming ``what`` if it is not one.

    Every duration is finite, at least 0 and at most 100 years; each field has a
    narrower range of its own (:mod:`gatewayd.bounds`).
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise InvalidInput(
            f"{what}: expected a duration like 30s, 5m or 1h30m, got {_short(text)}",
            data={"field": what},
        )
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise InvalidInput(
                f"{what}: a duration must be a finite number >= 0, got {_short(text)}",
                data={"field": what},
            )
        return _bounded(float(text), text, what)
    raw = text.strip().lower()
    if raw.startswith("-"):
        raise InvalidInput(
            f"{what}: a duration cannot be negative, got {_short(text)}", data={"field": what}
        )
    if len(raw) > _MAX_TEXT:
        raise _unparsable(text, what)
    if _NUMBER.fullmatch(raw):
        return _bounded(float(raw), text, what)
    pos = 0
    total = 0.0
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(raw):
        raise _unparsable(text, what)
    return _bounded(total, text, what)


_SIZE = re.compile(r"(\d{1,15})\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?")
_SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: object, *, what: str = "size") -> int:
    """Bytes in ``text`` (``16MiB``, ``512K``, ``1048576``); InvalidInput naming ``what``."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidInput(
                f"{what}: a size cannot be negative, got {text}", data={"field": what}
            )
        return text
    if not isinstance(text, str):
        raise InvalidInput(
            f"{what}: expected a size like 512KiB, 16MiB or 1GiB, got {_short(text)}",
            data={"field": what},
        )
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInput(
            f"{what}: cannot parse {_short(text)} as a size; write it like 512KiB, 16MiB or 1GiB",
            data={"field": what},
        )
    unit = (match.group(2) or "b")[0]
    return int(match.group(1)) * _SIZE_UNITS[unit]


def format_size(size: int) -> str:
    """The shortest exact form: ``16777216`` -> ``16MiB``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


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


def to_milliseconds(value: datetime) -> datetime:
    """``value`` as :func:`format_time` writes it: cut to the millisecond."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse_time(text: object, *, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO 8601; a value without an offset is taken as UTC.

    Only the calendar's own limits are checked here; the range of a field is
    :func:`gatewayd.bounds.check_time`'s.
    """
    if not isinstance(text, str):
        raise InvalidInput(
            f"{what}: expected an ISO 8601 time like 2026-01-31T09:00:00Z, "
            f"got {type(text).__name__}",
            data={"field": what},
        )
    raw = text.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            f"{what}: cannot parse {_short(text)} as an ISO 8601 time like 2026-01-31T09:00:00Z",
            data={"field": what},
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{what}: {_short(text)} is outside the times gatewayd handles (1970 to 2200)",
            data={"field": what},
        ) from None


def parse_when(text: object, *, now: datetime, what: str = "at") -> datetime:
    """A one-shot time: ISO 8601, or relative to ``now`` like ``+20m``."""
    if isinstance(text, str) and text.strip().startswith("+"):
        offset = parse_duration(text.strip()[1:], what=what)
        try:
            return now + timedelta(seconds=offset)
        except OverflowError:
            raise InvalidInput(f"{what}: {_short(text)} is too far ahead") from None
    return parse_time(text, what=what)
