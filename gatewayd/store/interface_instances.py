"""The store interface, its instances: who lives, by leases on the store's clock."""

from __future__ import annotations

import abc
from datetime import datetime

from gatewayd.model import Instance


class InstanceStore(abc.ABC):
    """Instances and their leases."""

    # An instance owns the runs it starts while its lease lasts. Leases are judged
    # by the store's clock (:meth:`now`), never by an instance's own.

    @abc.abstractmethod
    async def now(self) -> datetime:
        """The store's clock, which judges every lease."""

    @abc.abstractmethod
    async def register_instance(self, instance: Instance, *, lease_s: float) -> Instance:
        """Record a new, ``live`` instance with a lease of ``lease_s`` from now; return it.

        ``heartbeat_at`` and ``lease_until`` are set by the store's clock.
        """

    @abc.abstractmethod
    async def renew_lease(self, instance_id: str, *, lease_s: float) -> bool:
        """Extend a ``live`` instance's lease to ``lease_s`` from now.

        ``False`` (nothing changed) if the instance is not live any more: it was
        taken over, and owns nothing.
        """

    @abc.abstractmethod
    async def stop_instance(self, instance_id: str) -> None:
        """Record that a live instance stopped by itself (its lease ends now)."""

    @abc.abstractmethod
    async def take_over(
        self, instance_id: str, *, by: str, grace_s: float = 0.0, proven_dead: bool = False
    ) -> bool:
        """Record a ``live`` instance ``gone``, taken over by instance ``by``; whether this won.

        Only an instance whose lease lapsed more than ``grace_s`` ago by the
        store's clock can be taken over, unless ``proven_dead`` (a successor holds
        the lock it held). Exactly one taker wins; the others get ``False``.
        """

    @abc.abstractmethod
    async def get_instance(self, instance_id: str) -> Instance | None:
        """The instance, or ``None``."""

    @abc.abstractmethod
    async def instances(self) -> list[Instance]:
        """Every instance recorded, oldest first."""
