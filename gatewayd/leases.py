"""Keeping this instance's lease, and noticing the instances whose leases lapsed.

An instance renews its lease three times within each ``lease``, and at once
when its store takes writes again after a fault. When it finds
another instance's lease lapsed (by the store's clock), it settles at once
rather than at its next sweep; that look runs beside the renewals, so that a
slow store never holds a renewal back. When it finds its own lease gone (another
instance took its runs over: it was frozen, or cut off from the store, for
longer than its lease), it owns nothing any more, and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import structlog

from gatewayd.clock import Clock
from gatewayd.model import InstanceState
from gatewayd.racing import first_of
from gatewayd.store.base import Store, StoreHealth

log = structlog.get_logger("gatewayd.leases")

RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    """Renews ``instance_id``'s lease; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        instance_id: str,
        lease_s: float,
        others_lapsed: Callable[[], Awaitable[object]],
        lost: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._instance_id = instance_id
        self._lease_s = lease_s
        self._others_lapsed = others_lapsed
        self._lost = lost
        self._writable_again = anyio.Event()
        self._looking = False
        store.watch_health(self._health_changed)

    def _health_changed(self, health: StoreHealth) -> None:
        if health.writable:
            self._writable_again.set()

    async def keep(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Renew the lease until cancelled, or until it is found lost."""
        task_status.started()
        async with anyio.create_task_group() as looks:
            while True:
                await first_of(
                    lambda: self._clock.sleep(self._lease_s / RENEWALS_PER_LEASE),
                    self._writable_again.wait,
                )
                self._writable_again = anyio.Event()
                if not self._store.health.writable:
                    continue  # the store holds nothing back for a lease: try again next time
                try:
                    renewed = await self._store.renew_lease(
                        self._instance_id, lease_s=self._lease_s
                    )
                except Exception:
                    log.exception(
                        "could not renew the lease; trying again", instance_id=self._instance_id
                    )
                    continue
                if not renewed:
                    log.error(
                        "this instance's lease was taken over by another instance; it owns "
                        "no run any more",
                        instance_id=self._instance_id,
                    )
                    self._lost()
                    looks.cancel_scope.cancel()
                    return
                if not self._looking:
                    self._looking = True
                    looks.start_soon(self._look_at_others)

    async def _look_at_others(self) -> None:
        try:
            if await self._any_lapsed():
                await self._others_lapsed()
        except Exception:
            log.exception("could not look at the other instances' leases; trying again later")
        finally:
            self._looking = False

    async def _any_lapsed(self) -> bool:
        now = await self._store.now()
        return any(
            other.state is InstanceState.LIVE
            and other.instance_id != self._instance_id
            and not other.lives_at(now)
            for other in await self._store.instances()
        )
