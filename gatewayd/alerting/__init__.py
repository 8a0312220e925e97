"""Alerts: what raises them (``rules``), where they go (``sinks``), and their delivery."""
