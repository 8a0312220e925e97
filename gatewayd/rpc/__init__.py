"""JSON-RPC 2.0 over a Unix socket, one JSON object per line."""

from __future__ import annotations
