"""The memory store's instances: leases judged by its clock."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import anyio.lowlevel

from gatewayd.errors import Conflict
from gatewayd.model import Instance, InstanceState
from gatewayd.store.memoryrecords import MemoryRecords


class MemoryInstances(MemoryRecords):
    """The instances of :class:`gatewayd.store.memory.MemoryStore`."""

    async def now(self) -> datetime:
        await anyio.lowlevel.checkpoint()
        return self._clock.now()

    async def register_instance(self, instance: Instance, *, lease_s: float) -> Instance:
        await anyio.lowlevel.checkpoint()
        if instance.instance_id in self._instances:
            raise Conflict(f"an instance with id {instance.instance_id} exists")
        now = self._clock.now()
        recorded = dataclasses.replace(
            instance,
            heartbeat_at=now,
            lease_until=now + timedelta(seconds=lease_s),
            state=InstanceState.LIVE,
            taken_by=None,
        )
        self._instances[instance.instance_id] = recorded
        return recorded

    async def renew_lease(self, instance_id: str, *, lease_s: float) -> bool:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None or instance.state is not InstanceState.LIVE:
            return False
        now = self._clock.now()
        self._instances[instance_id] = dataclasses.replace(
            instance, heartbeat_at=now, lease_until=now + timedelta(seconds=lease_s)
        )
        return True

    async def stop_instance(self, instance_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is not None and instance.state is InstanceState.LIVE:
            self._instances[instance_id] = dataclasses.replace(
                instance, state=InstanceState.STOPPED, lease_until=self._clock.now()
            )

    async def take_over(
        self, instance_id: str, *, by: str, grace_s: float = 0.0, proven_dead: bool = False
    ) -> bool:
        await anyio.lowlevel.checkpoint()
        instance = self._instances.get(instance_id)
        if instance is None or instance.state is not InstanceState.LIVE:
            return False
        lapsed = instance.lease_until is None or (
            instance.lease_until + timedelta(seconds=grace_s) < self._clock.now()
        )
        if not (lapsed or proven_dead):
            return False
        self._instances[instance_id] = dataclasses.replace(
            instance, state=InstanceState.GONE, taken_by=by
        )
        return True

    async def get_instance(self, instance_id: str) -> Instance | None:
        await anyio.lowlevel.checkpoint()
        return self._instances.get(instance_id)

    async def instances(self) -> list[Instance]:
        await anyio.lowlevel.checkpoint()
        return list(self._instances.values())
