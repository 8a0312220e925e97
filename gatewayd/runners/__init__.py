"""Runners: how each payload kind does its work."""

from __future__ import annotations
