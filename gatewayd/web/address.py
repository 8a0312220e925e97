"""``[http] listen`` addresses: parsed and judged, with no I/O."""

from __future__ import annotations

import ipaddress

from gatewayd.errors import InvalidInput


def parse_listen(value: str, what: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) as a host and a port (0: any free one)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInput(
            f"{what}: expected HOST:PORT, like 127.0.0.1:9464, got {value!r}", data={"field": what}
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (a name other than
    ``localhost`` is judged reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
