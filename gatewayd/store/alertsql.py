"""The SQL of the alerts, SQLite's and PostgreSQL's: the same text, with each one's mark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatewayd.alerting.values import Alert, AlertReason, AlertState
from gatewayd.store.sqlrows import to_us
from gatewayd.store.tables import ALERTS

_SELECT = f"SELECT {ALERTS.names} FROM alerts"
_PENDING = f"state = '{AlertState.PENDING.value}'"
_DELIVERY = ("state", "next_attempt_at", "tries", "body")


@dataclass(frozen=True, slots=True)
class AlertSQL:
    """Each alert operation's statement and parameters, for placeholder ``mark``."""

    mark: str

    def insert(self, conflict_clause: str) -> str:
        return (
            f"INSERT INTO alerts ({ALERTS.names}) VALUES ({ALERTS.placeholders(self.mark)}) "
            f"{conflict_clause}"
        )

    def due(self, now: datetime, limit: int, lock: str = "") -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        query = (
            f"SELECT alert_id FROM alerts WHERE {_PENDING} AND next_attempt_at <= {m} "
            f"ORDER BY next_attempt_at, alert_id LIMIT {m} {lock}"
        )
        return query, (to_us(now), limit)

    def hold(self, ids: Sequence[str], until: datetime) -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        marks = ", ".join([m] * len(ids))
        query = (
            f"UPDATE alerts SET next_attempt_at = {m} WHERE alert_id IN ({marks}) "
            f"RETURNING {ALERTS.names}"
        )
        return query, (to_us(until), *ids)

    def attempt(self, alert: Alert) -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        query = (
            f"UPDATE alerts SET {ALERTS.assignments(_DELIVERY, m)} "
            f"WHERE alert_id = {m} AND {_PENDING} AND tries = {m}"
        )
        return query, (
            *ALERTS.values_of(alert, _DELIVERY),
            alert.alert_id,
            len(alert.attempts) - 1,
        )

    def page(self, job_id: str | None, limit: int) -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        if job_id is None:
            return f"{_SELECT} ORDER BY raised_at DESC, alert_id DESC LIMIT {m}", (limit,)
        query = f"{_SELECT} WHERE job_id = {m} ORDER BY raised_at DESC, alert_id DESC LIMIT {m}"
        return query, (job_id, limit)

    def latest(self, job_id: str, reasons: Sequence[AlertReason]) -> tuple[str, tuple[Any, ...]]:
        m = self.mark
        marks = ", ".join([m] * len(reasons))
        query = (
            f"{_SELECT} WHERE job_id = {m} AND reason IN ({marks}) "
            "ORDER BY raised_at DESC, alert_id DESC LIMIT 1"
        )
        return query, (job_id, *(r.value for r in reasons))

    @staticmethod
    def counts() -> str:
        return "SELECT sink, state, count(*) FROM alerts GROUP BY sink, state"

    @staticmethod
    def next_due() -> str:
        return f"SELECT min(next_attempt_at) FROM alerts WHERE {_PENDING}"


SQLITE = AlertSQL("?")
POSTGRES = AlertSQL("%s")
