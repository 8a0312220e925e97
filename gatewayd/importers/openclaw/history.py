"""OpenClaw's run history, ``runs/<jobId>.jsonl`` and its SQLite rows, into ended runs.

A line is a run log entry: ``{"ts", "jobId", "action": "finished", "status":
"ok"|"error"|"skipped", "error", "summary", "runAtMs", "durationMs", ...}``, with
``ts`` the time it finished and ``runAtMs`` the time it started, both in
milliseconds since the epoch. A line that does not parse, or lacks what a run
needs, is counted, never fatal. Lines of other actions are not runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gatewayd.importers.plan import History, PlannedRun
from gatewayd.model import RunStatus, Trigger
from gatewayd.settings import MAX_SUMMARY_BYTES

STATUSES = {"ok": RunStatus.SUCCEEDED, "error": RunStatus.FAILED, "skipped": RunStatus.SKIPPED}
# What a run log entry may hold that gatewayd does not keep of a run.
TELEMETRY = ("model", "provider", "usage", "delivered", "deliveryStatus", "deliveryError")
# The earliest and latest times a run is believed to have (OpenClaw is from 2025 on).
_EARLIEST_MS = 946_684_800_000  # 2000-01-01
_LATEST_MS = 4_102_444_800_000  # 2100-01-01
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Broken(ValueError):
    """A line that is not a run."""


class _NotARun(ValueError):
    """A line of another action: not a run, not broken either."""


def from_ms(value: Any) -> datetime:
    """A time from milliseconds since the epoch, in the years a run can have."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Broken("not a number of milliseconds")
    if not _EARLIEST_MS <= value <= _LATEST_MS:
        raise _Broken("out of range")
    return _EPOCH + timedelta(milliseconds=int(value))


def _text(value: Any, what: str) -> str | None:
    """A text of the entry, cut to what gatewayd keeps of a run's summary (and said so)."""
    if not isinstance(value, str) or not value:
        return None
    data = value.encode()
    if len(data) <= MAX_SUMMARY_BYTES:
        return value
    kept = data[:MAX_SUMMARY_BYTES].decode(errors="ignore")
    return f"{kept}\n[{what} truncated]"


def _trigger(entry: dict[str, Any]) -> Trigger:
    """``manual`` where the entry says the run was asked for, else ``schedule``."""
    said = entry.get("trigger") or entry.get("mode") or entry.get("runMode")
    if entry.get("manual") is True or said in ("manual", "force"):
        return Trigger.MANUAL
    return Trigger.SCHEDULE


def run_of(entry: Any) -> PlannedRun:
    """The run one entry records; raises if it is not one."""
    if not isinstance(entry, dict):
        raise _Broken("not an object")
    if entry.get("action", "finished") != "finished":
        raise _NotARun(str(entry.get("action")))
    status = STATUSES.get(str(entry.get("status")).lower())
    if status is None:
        raise _Broken("no status")
    ended = from_ms(entry.get("ts"))
    duration = entry.get("durationMs")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0
    ):
        raise _Broken("bad durationMs")
    if entry.get("runAtMs") is not None:
        started = from_ms(entry["runAtMs"])
    elif duration is not None:
        started = ended - timedelta(milliseconds=int(duration))
    else:
        started = ended
    if started > ended:
        ended = started + timedelta(milliseconds=int(duration or 0))
    if duration is None:
        duration = (ended - started) // timedelta(milliseconds=1)
    return PlannedRun(
        status=status,
        trigger=_trigger(entry),
        started_at=started,
        ended_at=ended,
        duration_ms=int(duration),
        error=_text(entry.get("error"), "error"),
        summary=_text(entry.get("summary"), "summary"),
    )


def read_entries(entries: Iterable[Any], *, source: str) -> tuple[History, bool]:
    """The history of these entries (each a parsed line, or ``None`` for one that did not
    parse), oldest first; and whether any carried what gatewayd does not keep."""
    runs: list[PlannedRun] = []
    broken = 0
    telemetry = False
    for entry in entries:
        try:
            run = run_of(entry)
        except _NotARun:
            continue
        except _Broken:
            broken += 1
            continue
        runs.append(run)
        telemetry = telemetry or any(entry.get(k) is not None for k in TELEMETRY)
    runs.sort(key=lambda r: (r.started_at, r.ended_at))
    return History(source=source, runs=tuple(runs), broken=broken), telemetry


def parse_line(line: bytes | str | None) -> Any:
    """One JSONL line (or a JSON column), or ``None`` if it is not JSON."""
    if line is None:
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def read_lines(data: bytes, *, source: str) -> tuple[History, bool]:
    """The history of a ``runs/<jobId>.jsonl`` file's bytes."""
    lines = (line for line in data.splitlines() if line.strip())
    return read_entries((parse_line(line) for line in lines), source=source)
