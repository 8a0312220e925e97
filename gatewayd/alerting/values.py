"""Alerts and their sinks: frozen values, no I/O.

An alert is one message to one sink, stored before it is delivered. Its
``key`` names the fact that raised it (a run, a silence), so that raising it
again, after a restart or from another instance, stores nothing new.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

# A sink's name, in ``[alerts.NAME]`` and in a job's ``alerts.sinks``.
SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class AlertReason(enum.StrEnum):
    FAILURE = "failure"  # ``after`` failed or timed-out runs in a row (and again after cooldown)
    RECOVERY = "recovery"  # the first success after an alerted failure streak
    MISSED = "missed"  # a slot recorded missed
    SILENCE = "silence"  # no success for ``expect_success_within`` (the dead-man's switch)


class AlertState(enum.StrEnum):
    PENDING = "pending"  # stored, not delivered yet: attempts go on
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed; the last error says why


class SinkKind(enum.StrEnum):
    COMMAND = "command"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkSpec:
    """An ``[alerts.NAME]`` table: where alerts go, and how hard to try.

    A ``command`` gets the alert's JSON on its stdin and succeeds by exiting 0;
    a ``webhook`` gets it as a JSON POST and succeeds with a 2xx answer, with
    ``Authorization: Bearer $token_env`` if ``token_env`` is set. Attempt n
    (from 1) that fails is tried again ``retry_backoff_s * 2**(n-1)`` later, at
    most :data:`MAX_RETRY_DELAY_S`, up to ``max_attempts`` attempts; each
    attempt gives up after ``timeout_s``.
    """

    name: str
    kind: SinkKind
    command: tuple[str, ...] = ()
    webhook: str | None = None
    token_env: str | None = None
    retry_backoff_s: float = 5.0
    max_attempts: int = 8
    timeout_s: float = 10.0


MAX_RETRY_DELAY_S = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertAttempt:
    """One try to deliver an alert: when, how long it took, and its error if it failed."""

    number: int
    at: datetime
    duration_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert to one sink: what it says, and how its delivery stands.

    ``next_attempt_at`` is when a pending alert is next tried (or, while an
    instance tries it, when another may try it if that one dies).
    """

    alert_id: str
    key: str
    sink: str
    reason: AlertReason
    job_id: str
    job_name: str
    run_ids: tuple[str, ...] = ()
    streak: int | None = None
    message: str
    raised_at: datetime
    host: str
    instance: str
    state: AlertState = AlertState.PENDING
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    attempts: tuple[AlertAttempt, ...] = ()

    @property
    def last_error(self) -> str | None:
        return self.attempts[-1].error if self.attempts else None


def alert_id_of(key: str, sink: str) -> str:
    return f"{key}@{sink}"
