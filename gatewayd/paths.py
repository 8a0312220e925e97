"""Where the store and the socket are, for the daemon and for the CLI alike.

The state directory is, in order: ``--state-dir``; ``$GATEWAYD_STATE_DIR``; the
config's ``gateway.state_dir``; ``$STATE_DIRECTORY`` (set by systemd's
``StateDirectory=``); ``$XDG_STATE_HOME/gatewayd``; ``~/.local/state/gatewayd``.
The socket is ``--socket``, ``$GATEWAYD_SOCKET``, the config's
``gateway.socket``, or ``<state_dir>/gatewayd.sock``.
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
    for candidate in (flag, env.get("GATEWAYD_SOCKET"), configured):
        if candidate:
            return Path(candidate).expanduser().absolute()
    return state_dir / SOCKET_NAME
