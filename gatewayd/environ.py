"""What a run inherits of the daemon's environment.

Runs get the daemon's environment as it started, less what belongs to the
daemon alone: the service manager's variables (its notify socket, watchdog,
socket activation and invocation) and gatewayd's own ``GATEWAYD_*`` settings,
which may name a store and its credentials. ``[gateway] pass_env`` narrows it
to the variables it names. Each run then gets its job's ``env`` and the
``GATEWAYD_*`` variables of the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# The service manager's variables: meaningful only to the daemon it started.
SERVICE_VARIABLES = frozenset(
    {
        "NOTIFY_SOCKET",
        "MAINPID",
        "MANAGERPID",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "SYSTEMD_EXEC_PID",
        "MEMORY_PRESSURE_WATCH",
        "MEMORY_PRESSURE_WRITE",
    }
)
SERVICE_PREFIXES = ("WATCHDOG_", "LISTEN_", "TRIGGER_", "GATEWAYD_")


def is_daemon_only(name: str) -> bool:
    return name in SERVICE_VARIABLES or name.startswith(SERVICE_PREFIXES)


def run_environment(
    daemon_env: Mapping[str, str], pass_env: Iterable[str] | None = None
) -> dict[str, str]:
    """The part of ``daemon_env`` every run inherits (only ``pass_env``'s names, if given)."""
    wanted = None if pass_env is None else frozenset(pass_env)
    return {
        name: value
        for name, value in daemon_env.items()
        if not is_daemon_only(name) and (wanted is None or name in wanted)
    }
