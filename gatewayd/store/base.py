"""The store interface: the one durable record of jobs, runs and instances.

Every implementation passes the contract suite in ``tests/test_store_contract.py``,
with one instance and with two sharing the store. Every decision that keeps the
record true is taken inside one store transaction, so that any number of
instances can share a store: each state change is guarded by the state it
expects (two writers never both win), events get their ``seq`` in the
transaction that writes them (in commit order), and whether an instance lives
is judged by its lease on the store's clock.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio

from gatewayd.store.interface_alerts import AlertStore
from gatewayd.store.interface_events import EventStore
from gatewayd.store.interface_instances import InstanceStore
from gatewayd.store.interface_jobs import JobStore
from gatewayd.store.interface_runs import RunStore
from gatewayd.store.values import (
    NOTHING,
    Audit,
    BadEnding,
    Envelope,
    EventsListener,
    HealthListener,
    Publication,
    SlotClaims,
    StoreHealth,
)

__all__ = [
    "NOTHING",
    "Audit",
    "BadEnding",
    "Envelope",
    "EventsListener",
    "HealthListener",
    "Publication",
    "SlotClaims",
    "Store",
    "StoreHealth",
]


class Store(InstanceStore, JobStore, RunStore, EventStore, AlertStore, abc.ABC):
    """Durable jobs, runs and instances.

    All methods are coroutines and never block the event loop. A method that
    changes state either does all of its change or none of it, and raises a
    :class:`gatewayd.errors.GatewaydError` describing why not.
    """

    # --- lifecycle ------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the store, creating or migrating its schema.

        Raises :class:`gatewayd.errors.StoreCorrupt` if the underlying data is
        damaged or is not a gatewayd store, and
        :class:`gatewayd.errors.StoreError` if it was written by a newer version.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store's resources. Idempotent."""

    def time_commits(self, listener: Callable[[float], None]) -> None:
        """Tell ``listener`` how long each commit took, in seconds, from any thread (the
        SQLite store calls it on its writer's); a store with no commits never does."""
        return

    def stats(self) -> dict[str, int]:
        """Counters for status reports (the SQLite store: commits and writes so far)."""
        return {}

    # --- locks shared by the instances ---------------------------------------------

    @abc.abstractmethod
    def hold_lock(self, name: str, *, wait_s: float) -> AbstractAsyncContextManager[None]:
        """Hold the lock ``name``, shared by every instance on the store, while the
        context lasts, for work made of several transactions that no two
        instances may do at once.

        Another holder makes this one wait, without blocking the event loop, up
        to ``wait_s`` (then :class:`gatewayd.errors.LockBusy`). A holder whose
        process dies, or whose connection to the store is lost, releases it.
        """

    # --- health ---------------------------------------------------------------------
    #
    # A store whose disk or files fail (full, read-only, an I/O error, damaged)
    # does not raise into its callers' writes that must not be lost: it holds
    # them and writes them in order once it can. Writes that a user asked for
    # (a job change, a manual run) are refused at once with the fault instead.

    @property
    def health(self) -> StoreHealth:
        """The store's health now; a store that cannot fail is always writable."""
        return StoreHealth()

    def watch_health(self, listener: HealthListener) -> None:
        """Call ``listener(health)`` on the event loop each time the health changes."""
        return

    def check_writable(self) -> None:
        """Raise the store's fault if it takes no writes now (for writes a user asked for)."""
        refusal = self.health.refusal()
        if refusal is not None:
            raise refusal

    async def check_files(self) -> None:
        """Look at the store's files for a fault (a file deleted or replaced under it).

        The sweeper calls it; a fault found is reported through the health.
        """
        return

    async def upkeep(self) -> None:
        """The store's own upkeep while it is open, run by its owner until cancelled.

        A database server's store probes a lost server here, so that its health
        comes back without a write to wait for; the embedded stores have none.
        """
        await anyio.sleep_forever()

    # --- checking -------------------------------------------------------------------

    @abc.abstractmethod
    async def audit(self) -> Audit:
        """Records that break the invariants as stored (for ``doctor``); reads only."""
