"""Reproducible measurements of gatewayd; each prints a table, then a SUMMARY line."""

from __future__ import annotations
