"""The memory store's alerts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio.lowlevel

from gatewayd.alerting.values import Alert, AlertReason, AlertState
from gatewayd.store.memoryrecords import MemoryRecords


def _newest_first(alert: Alert) -> tuple[datetime, str]:
    return (alert.raised_at, alert.alert_id)


class MemoryAlerts(MemoryRecords):
    """Alerts and their delivery."""

    async def record_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        await anyio.lowlevel.checkpoint()
        stored = []
        for alert in alerts:
            if alert.alert_id not in self._alerts:
                self._alerts[alert.alert_id] = alert
                stored.append(alert)
        return stored

    async def take_alerts(self, *, now: datetime, hold_s: float, limit: int) -> list[Alert]:
        await anyio.lowlevel.checkpoint()
        due = sorted(
            (
                a
                for a in self._alerts.values()
                if a.state is AlertState.PENDING
                and a.next_attempt_at is not None
                and a.next_attempt_at <= now
            ),
            key=lambda a: (a.next_attempt_at, a.alert_id),
        )[:limit]
        until = now + timedelta(seconds=hold_s)
        taken = [dataclasses.replace(a, next_attempt_at=until) for a in due]
        for alert in taken:
            self._alerts[alert.alert_id] = alert
        return taken

    async def record_attempt(self, alert: Alert) -> bool:
        await anyio.lowlevel.checkpoint()
        stored = self._alerts.get(alert.alert_id)
        if (
            stored is None
            or stored.state is not AlertState.PENDING
            or len(stored.attempts) != len(alert.attempts) - 1
        ):
            return False
        self._alerts[alert.alert_id] = alert
        return True

    async def list_alerts(self, *, job_id: str | None, limit: int) -> list[Alert]:
        await anyio.lowlevel.checkpoint()
        found = [a for a in self._alerts.values() if job_id is None or a.job_id == job_id]
        return sorted(found, key=_newest_first, reverse=True)[:limit]

    async def latest_alert(self, job_id: str, reasons: Sequence[AlertReason]) -> Alert | None:
        await anyio.lowlevel.checkpoint()
        found = [a for a in self._alerts.values() if a.job_id == job_id and a.reason in reasons]
        return max(found, key=_newest_first, default=None)

    async def alert_counts(self) -> dict[tuple[str, AlertState], int]:
        await anyio.lowlevel.checkpoint()
        counts: dict[tuple[str, AlertState], int] = {}
        for alert in self._alerts.values():
            key = (alert.sink, alert.state)
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def next_alert_at(self) -> datetime | None:
        await anyio.lowlevel.checkpoint()
        return min(
            (
                a.next_attempt_at
                for a in self._alerts.values()
                if a.state is AlertState.PENDING and a.next_attempt_at is not None
            ),
            default=None,
        )
