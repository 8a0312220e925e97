"""Which machine this is: its name (for people) and its id (for the runs that live on it)."""

from __future__ import annotations

import socket
from pathlib import Path

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def host_name() -> str:
    return socket.gethostname()


def machine_id(files: tuple[Path, ...] = MACHINE_ID_FILES) -> str:
    """The machine id systemd and D-Bus keep; the host name where there is none (macOS)."""
    for path in files:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return host_name()
