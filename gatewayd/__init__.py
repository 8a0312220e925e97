"""gatewayd: a scheduler daemon for agent gateways whose record of runs is always true."""

from __future__ import annotations

__version__ = "0.1.0"
