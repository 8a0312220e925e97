"""The range of every duration, time and number a user can set, in one table.

Job specs, the config file and the RPC methods all check their values here, so a
value outside its range is refused the same way everywhere: with the field's
name and the range, before anything is stored. The README lists the table.
Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from gatewayd.durations import DAY, HOUR, MAX_DURATION_S, YEAR, format_duration
from gatewayd.errors import InvalidInput

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Every time a user gives (a one-shot `at`, an anchor, `--since`, `--from`).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """An inclusive range of seconds; ``zero_means`` documents a 0 outside it."""

    low: float
    high: float
    zero_means: str | None = None

    def check(self, seconds: float, what: str) -> float:
        """``seconds`` if it is finite and inside the range; else InvalidInput naming ``what``."""
        if self.zero_means is not None and seconds == 0:
            return 0.0
        if not math.isfinite(seconds) or not self.low <= seconds <= self.high:
            zero = f" (or 0 for {self.zero_means})" if self.zero_means is not None else ""
            raise InvalidInput(
                f"{what}: must be from {format_duration(self.low)} to "
                f"{format_duration(self.high)}{zero}, got {_describe(seconds)}",
                data={"field": what},
            )
        return float(seconds)

    def describe(self) -> str:
        zero = f"; 0 for {self.zero_means}" if self.zero_means is not None else ""
        return f"{format_duration(self.low)} to {format_duration(self.high)}{zero}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Count:
    """An inclusive range of integers."""

    low: int
    high: int

    def check(self, value: object, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(
                f"{what}: expected an integer, got {type(value).__name__}", data={"field": what}
            )
        if not self.low <= value <= self.high:
            raise InvalidInput(
                f"{what}: must be from {self.low} to {self.high}, got {_describe(value)}",
                data={"field": what},
            )
        return value


def _describe(value: float) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_time(value: datetime, what: str) -> datetime:
    """``value`` if it lies between EARLIEST and LATEST; else InvalidInput naming ``what``."""
    if not EARLIEST <= value < LATEST:
        raise InvalidInput(
            f"{what}: must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}, "
            f"got {value.isoformat()}",
            data={"field": what},
        )
    return value


# --- a job's fields ------------------------------------------------------------------

EVERY = Span(low=1.0, high=366 * DAY)
STAGGER = Span(low=0.0, high=DAY)
TIMEOUT = Span(low=0.001, high=30 * DAY, zero_means="no timeout")
CATCHUP_WINDOW = Span(low=0.0, high=366 * DAY)
RETRY_BACKOFF = Span(low=0.0, high=DAY)
RETRY_MAX_BACKOFF = Span(low=0.0, high=7 * DAY)
RETRY_ATTEMPTS = Count(low=1, high=100)
# A one-shot `at` given relative to now (`+20m`) and how far it may reach.
AT_OFFSET = Span(low=0.0, high=MAX_DURATION_S)
MAX_OUTPUT = Count(low=0, high=64 * GIB)
ALERT_SINKS = Count(low=0, high=16)
ALERT_AFTER = Count(low=1, high=1000)
ALERT_COOLDOWN = Span(low=0.0, high=30 * DAY)
EXPECT_SUCCESS_WITHIN = Span(low=1.0, high=366 * DAY)
PAUSE_AFTER = Count(low=1, high=1000)

# --- the config file -----------------------------------------------------------------

DEFAULT_TIMEOUT = TIMEOUT
KILL_GRACE = Span(low=0.0, high=HOUR)
DRAIN_TIMEOUT = Span(low=0.0, high=DAY)
SWEEP_INTERVAL = Span(low=0.05, high=DAY)
HISTORY_MAX_AGE = Span(low=0.0, high=10 * YEAR)
MISFIRE_GRACE = Span(low=0.0, high=DAY)
IDLE_TIMEOUT = Span(low=1.0, high=DAY)
MAX_CONCURRENT_RUNS = Count(low=1, high=10_000)
HISTORY_PER_JOB = Count(low=1, high=1_000_000)
EVENTS_KEEP = Count(low=100, high=100_000_000)
EVENT_QUEUE = Count(low=10, high=1_000_000)
CATCHUP_MAX_RUNS = Count(low=1, high=1000)
MAX_CONNECTIONS = Count(low=1, high=100_000)
LEASE = Span(low=0.1, high=HOUR)
ORPHAN_GRACE = Span(low=0.0, high=7 * DAY)
BACKSTOP = Span(low=0.01, high=HOUR)
SINK_RETRY_BACKOFF = Span(low=0.01, high=HOUR)
SINK_MAX_ATTEMPTS = Count(low=1, high=100)
SINK_TIMEOUT = Span(low=0.01, high=HOUR)

# --- RPC parameters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """How many items one call of a list returns: by default, and at most.

    The largest page bounds the memory one connection's reply holds, however
    slowly its client reads (a run carries up to 4 KiB of output: fewer per page).
    """

    default: int
    largest: int

    def check(self, value: object, what: str = "limit") -> int:
        return Count(low=1, high=self.largest).check(value, what)


JOB_PAGE = Page(default=100, largest=200)
NEXT_SLOTS = Page(default=10, largest=1000)  # the slots ``cron next`` shows
RUN_PAGE = Page(default=20, largest=200)
SESSION_PAGE = Page(default=50, largest=500)
ALERT_PAGE = Page(default=50, largest=500)
WHY_SLOTS = Page(default=500, largest=500)  # the slots ``cron why`` shows (the latest)

WAIT_TIMEOUT = Span(low=0.0, high=DAY)
PROBE_LAG = Span(low=0.001, high=60.0)
EVENT_SEQ = Count(low=0, high=2**63 - 1)
