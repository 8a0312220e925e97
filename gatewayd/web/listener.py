"""The HTTP listener: uvicorn's server on a socket we bind, in the daemon's own loop.

The daemon drives it as uvicorn's own ``serve`` does, without handing it the
process's signals: :meth:`HttpListener.start` binds and starts serving,
:meth:`HttpListener.stop` closes the socket and ends the connections.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.types import ASGIApp

from gatewayd.web.address import parse_listen

# How long connections in progress may finish once the listener stops.
GRACEFUL_STOP_S = 2


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on ``HOST:PORT`` (raises OSError if it cannot be bound)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class HttpListener:
    """``app`` served on ``sock`` until :meth:`stop`."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self._sock = sock
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=GRACEFUL_STOP_S,
        )
        config.load()
        self._server = uvicorn.Server(config)
        # What uvicorn's own serve() sets before its startup(): with lifespan "off", nothing.
        self._server.lifespan = config.lifespan_class(config)
        self.url = url_of(sock)

    async def start(self) -> None:
        await self._server.startup(sockets=[self._sock])

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._server.shutdown(sockets=[self._sock])
        self._sock.close()
