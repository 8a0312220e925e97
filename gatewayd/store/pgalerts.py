"""The PostgreSQL store's alerts: each method one read or one transaction (SQL in ``alertsql``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from gatewayd.alerting.values import Alert, AlertReason, AlertState
from gatewayd.store.alertsql import POSTGRES as SQL
from gatewayd.store.pgaccess import Conn, PostgresAccess
from gatewayd.store.sqlrows import from_us
from gatewayd.store.tables import ALERTS


async def _record(conn: Conn, alerts: Sequence[Alert]) -> list[Alert]:
    query = SQL.insert("ON CONFLICT (alert_id) DO NOTHING")
    stored = []
    for alert in alerts:
        cursor = await conn.execute(query, ALERTS.values(alert))
        if cursor.rowcount == 1:
            stored.append(alert)
    return stored


async def _take(conn: Conn, now: datetime, hold_s: float, limit: int) -> list[Alert]:
    # Alerts another instance is taking are passed over, not waited for.
    cursor = await conn.execute(*SQL.due(now, limit, lock="FOR UPDATE SKIP LOCKED"))
    ids = [row[0] for row in await cursor.fetchall()]
    if not ids:
        return []
    cursor = await conn.execute(*SQL.hold(ids, now + timedelta(seconds=hold_s)))
    taken = [ALERTS.load(r) for r in await cursor.fetchall()]
    return sorted(taken, key=lambda a: ids.index(a.alert_id))


async def _attempt(conn: Conn, alert: Alert) -> bool:
    cursor = await conn.execute(*SQL.attempt(alert))
    return cursor.rowcount == 1


async def _page(conn: Conn, job_id: str | None, limit: int) -> list[Alert]:
    cursor = await conn.execute(*SQL.page(job_id, limit))
    return [ALERTS.load(r) for r in await cursor.fetchall()]


async def _latest(conn: Conn, job_id: str, reasons: Sequence[AlertReason]) -> Alert | None:
    cursor = await conn.execute(*SQL.latest(job_id, reasons))
    row = await cursor.fetchone()
    return None if row is None else ALERTS.load(row)


async def _counts(conn: Conn) -> dict[tuple[str, AlertState], int]:
    cursor = await conn.execute(SQL.counts())
    return {(s, AlertState(t)): int(n) for s, t, n in await cursor.fetchall()}


async def _next_due(conn: Conn) -> datetime | None:
    cursor = await conn.execute(SQL.next_due())
    row = await cursor.fetchone()
    return None if row is None else from_us(row[0])


class PostgresAlerts(PostgresAccess):
    """Alerts and their delivery; every write durable (it waits for a lost server)."""

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
