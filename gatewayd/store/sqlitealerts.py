"""The SQLite store's alerts: each method one read or one transaction (SQL in ``alertsql``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from gatewayd.alerting.values import Alert, AlertReason, AlertState
from gatewayd.store.alertsql import SQLITE as SQL
from gatewayd.store.sqliteaccess import SQLiteAccess
from gatewayd.store.sqlrows import from_us
from gatewayd.store.tables import ALERTS


def _record(conn: sqlite3.Connection, alerts: Sequence[Alert]) -> list[Alert]:
    query = SQL.insert("ON CONFLICT (alert_id) DO NOTHING")
    return [a for a in alerts if conn.execute(query, ALERTS.values(a)).rowcount == 1]


def _take(conn: sqlite3.Connection, now: datetime, hold_s: float, limit: int) -> list[Alert]:
    ids = [row[0] for row in conn.execute(*SQL.due(now, limit)).fetchall()]
    if not ids:
        return []
    rows = conn.execute(*SQL.hold(ids, now + timedelta(seconds=hold_s))).fetchall()
    taken = [ALERTS.load(r) for r in rows]
    return sorted(taken, key=lambda a: ids.index(a.alert_id))


def _attempt(conn: sqlite3.Connection, alert: Alert) -> bool:
    return conn.execute(*SQL.attempt(alert)).rowcount == 1


def _page(conn: sqlite3.Connection, job_id: str | None, limit: int) -> list[Alert]:
    return [ALERTS.load(r) for r in conn.execute(*SQL.page(job_id, limit)).fetchall()]


def _latest(conn: sqlite3.Connection, job_id: str, reasons: Sequence[AlertReason]) -> Alert | None:
    row = conn.execute(*SQL.latest(job_id, reasons)).fetchone()
    return None if row is None else ALERTS.load(row)


def _counts(conn: sqlite3.Connection) -> dict[tuple[str, AlertState], int]:
    return {(s, AlertState(t)): n for s, t, n in conn.execute(SQL.counts()).fetchall()}


def _next_due(conn: sqlite3.Connection) -> datetime | None:
    return from_us(conn.execute(SQL.next_due()).fetchone()[0])


class SQLiteAlerts(SQLiteAccess):
    """Alerts and their delivery; every write durable (held through a fault of the disk)."""

    async def record_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        if not alerts:
            return []
        return await self._write(partial(_record, alerts=list(alerts)), label="alerts")

    async def take_alerts(self, *, now: datetime, hold_s: float, limit: int) -> list[Alert]:
        op = partial(_take, now=now, hold_s=hold_s, limit=limit)
        return await self._write(op, durable=False, label="taking alerts")

    async def record_attempt(self, alert: Alert) -> bool:
        return await self._write(partial(_attempt, alert=alert), label="an alert's attempt")

    async def list_alerts(self, *, job_id: str | None, limit: int) -> list[Alert]:
        return await self._call(partial(_page, job_id=job_id, limit=limit))

    async def latest_alert(self, job_id: str, reasons: Sequence[AlertReason]) -> Alert | None:
        return await self._call(partial(_latest, job_id=job_id, reasons=list(reasons)))

    async def alert_counts(self) -> dict[tuple[str, AlertState], int]:
        return await self._call(_counts)

    async def next_alert_at(self) -> datetime | None:
        return await self._call(_next_due)
