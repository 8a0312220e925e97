"""Where the store and the socket are, for the daemon and for the CLI alike.

The state directory is, in order: ``--state-dir``; ``$GATEWAYD_STATE_DIR``; the
config's ``gateway.state_dir``; ``$STATE_DIRECTORY`` (set by systemd's
``StateDirectory=``); ``$XDG_STATE_HOME/gatewayd``; ``~/.local/state/gatewayd``.
The socket is ``--socket``, ``$GATEWAYD_SOCKET``, the config's
``gateway.socket``, ``$RUNTIME_DIRECTORY/gatewayd.sock`` under systemd (linked
from the state directory), or ``<state_dir>/gatewayd.sock``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DB_NAME = "gatewayd.db"
LOCK_NAME = "gatewayd.lock"
SOCKET_NAME = "gatewayd.sock"


def resolve_state_dir(
    flag: str | None, env: Mapping[str, str], configured: str | None = None
) -> Path:
    for candidate in (flag, env.get("GATEWAYD_STATE_DIR"), configured):
        if candidate:
            return Path(candidate).expanduser().absolute()
    systemd = env.get("STATE_DIRECTORY")
    if systemd:
        # systemd may list several directories separated by colons; the first is ours.
        return Path(systemd.split(":")[0]).absolute()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return (base / "gatewayd").absolute()


def resolve_socket(
    flag: str | None, env: Mapping[str, str], state_dir: Path, configured: str | None = None
) -> Path:
    """Where the daemon listens, and where the CLI connects.

    Under systemd's ``RuntimeDirectory=`` the daemon listens in
    ``$RUNTIME_DIRECTORY`` and links the socket from ``<state_dir>``, so a CLI
    given only the state directory still finds it.
    """
    for candidate in (flag, env.get("GATEWAYD_SOCKET"), configured):
        if candidate:
            return Path(candidate).expanduser().absolute()
    runtime = env.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]).absolute() / SOCKET_NAME
    return state_dir / SOCKET_NAME


def state_dir_socket(state_dir: Path) -> Path:
    """The socket path (a link, under systemd) a CLI finds from the state directory."""
    return state_dir / SOCKET_NAME
