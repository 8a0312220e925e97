"""The store (and the hints between its instances) that a location calls for."""

from __future__ import annotations

from gatewayd.broker import Broker, LocalBroker
from gatewayd.pgbroker import PostgresBroker
from gatewayd.store.base import Store
from gatewayd.store.location import StoreKind, StoreLocation
from gatewayd.store.postgres import PostgresStore
from gatewayd.store.sqlite import SQLiteStore


def open_store(location: StoreLocation, *, read_only: bool = False) -> Store:
    """The store at ``location``, not yet open (``read_only``: never written to)."""
    if location.kind is StoreKind.POSTGRESQL:
        return PostgresStore(location, read_only=read_only)
    assert location.path is not None
    return SQLiteStore(location.path, read_only=read_only)


def hints_for(location: StoreLocation) -> Broker:
    """How instances on this store hint each other: in the process, or by the database."""
    if location.kind is StoreKind.POSTGRESQL:
        return PostgresBroker(location)
    return LocalBroker()
