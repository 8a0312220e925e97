"""The store interface, its alerts: stored before they are delivered, with every attempt."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from gatewayd.alerting.values import Alert, AlertReason, AlertState


class AlertStore(abc.ABC):
    """Alerts, each to one sink, and how their delivery stands.

    These writes are durable: a store that cannot write now holds them and
    writes them once it can, so that no alert is dropped.
    """

    @abc.abstractmethod
    async def record_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store, in one transaction, the alerts whose ``alert_id`` is not stored yet;
        the ones stored now. An alert raised again (after a restart, or by another
        instance) is stored once."""

    @abc.abstractmethod
    async def take_alerts(self, *, now: datetime, hold_s: float, limit: int) -> list[Alert]:
        """Up to ``limit`` pending alerts due at ``now`` (``next_attempt_at <= now``),
        the earliest first, each moved in the same transaction to be due again at
        ``now + hold_s``: no other instance takes it while this one tries it, and
        any may once that has passed (its taker died)."""

    @abc.abstractmethod
    async def record_attempt(self, alert: Alert) -> bool:
        """Write ``alert``'s delivery (its state, attempts and next attempt) if the stored
        one is pending with one attempt fewer; whether it was written (``False``: another
        instance recorded this attempt first)."""

    @abc.abstractmethod
    async def list_alerts(self, *, job_id: str | None, limit: int) -> list[Alert]:
        """The latest ``limit`` alerts (of one job, if given), newest first."""

    @abc.abstractmethod
    async def latest_alert(self, job_id: str, reasons: Sequence[AlertReason]) -> Alert | None:
        """The job's newest alert raised for one of ``reasons``, or ``None``."""

    @abc.abstractmethod
    async def alert_counts(self) -> dict[tuple[str, AlertState], int]:
        """How many alerts there are, by sink and state."""

    @abc.abstractmethod
    async def next_alert_at(self) -> datetime | None:
        """When the earliest pending alert is due, or ``None`` if none is pending."""
