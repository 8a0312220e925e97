"""Stores: the durable record of jobs, runs and instances behind one interface."""

from __future__ import annotations

from gatewayd.store.base import Store
from gatewayd.store.memory import MemoryStore
from gatewayd.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Store"]
