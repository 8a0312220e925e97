"""``python -m gatewayd`` is the ``gatewayd`` command."""

from __future__ import annotations

from gatewayd.cli import entry

entry()
