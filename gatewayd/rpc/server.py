"""The RPC server: a Unix socket with mode 0600 that only its own user may use.

Each connection is read in chunks and split into frames; each request is
answered in order. A bad frame gets a JSON-RPC error and the connection goes
on; an unexpected failure in a method gets an internal error. Nothing a peer
sends can stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from gatewayd.errors import (
    GatewaydError,
    MethodNotFound,
    PermissionDenied,
    SocketInUse,
    StartupError,
    TooManyConnections,
)
from gatewayd.rpc.protocol import (
    FrameDecoder,
    Oversized,
    RequestError,
    encode_error,
    encode_notification,
    encode_result,
    oversized_error,
    parse_request,
)
from gatewayd.settings import GATEWAY, MAX_WORKING_READS, WRITE_TIMEOUT_S

log = structlog.get_logger("gatewayd.rpc")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# A streaming method sends notifications through ``send``; its return value is the
# response, which ends the stream.
StreamHandler = Callable[[dict[str, Any], Send], Awaitable[Any]]

# A peer that does not take a frame within this long is disconnected.
# Connections waiting to be accepted: a burst of clients is accepted, not refused.
BACKLOG = 1024

_READ_CHUNK = 64 * 1024
# Unix socket paths are limited to 108 bytes on Linux and 104 on macOS.
MAX_SOCKET_PATH = 104 if sys.platform == "darwin" else 108


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, if the OS tells."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if sys.platform == "darwin":
        local_peercred = 0x001
        raw = sock.getsockopt(0, local_peercred, 76)
        return int(struct.unpack_from("I", raw, 4)[0])
    return None


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0600, replacing a stale socket file.

    A socket file found at ``path`` is replaced only if nothing answers on it
    (its daemon is gone): :class:`SocketInUse` otherwise.
    """
    if len(os.fsencode(path)) >= MAX_SOCKET_PATH:
        raise StartupError(
            f"the socket path {path} is longer than the {MAX_SOCKET_PATH - 1} bytes a Unix "
            "socket allows; pass a shorter --socket"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        if someone_answers(path):
            raise SocketInUse(
                f"another daemon answers on {path}; refusing to replace its socket. "
                "Stop it, or give this one another --socket"
            )
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def someone_answers(path: Path) -> bool:
    """Whether a process accepts connections on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # it exists and is busy (a full backlog, say): someone owns it
    finally:
        probe.close()
    return True


def link_socket(link: Path, target: Path) -> None:
    """Point ``link`` at the socket ``target``, replacing a stale link or socket there."""
    with contextlib.suppress(FileNotFoundError):
        mode = link.lstat().st_mode
        if not (stat.S_ISLNK(mode) or stat.S_ISSOCK(mode)):
            raise StartupError(
                f"{link} exists and is not a socket or a link; refusing to replace it"
            )
        link.unlink()
    link.symlink_to(target)


class RpcServer:
    """Serves ``methods`` on a bound socket.

    At most ``max_connections`` are served at once: one more is answered with an
    error and closed. At most ``MAX_WORKING_READS`` requests of the ``heavy`` methods
    (large reads) are computed at once. A connection that sends no complete
    request for ``idle_timeout_s`` is closed, and so is one that does not take a reply within
    ``write_timeout_s``; a reply is one frame of a bounded page, so a peer that
    never reads holds at most that much memory.
    """

    def __init__(
        self,
        *,
        methods: Mapping[str, Handler],
        streams: Mapping[str, StreamHandler] | None = None,
        uid: int | None = None,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        max_connections: int = GATEWAY.max_connections,
        idle_timeout_s: float = GATEWAY.idle_timeout_s,
        heavy: frozenset[str] = frozenset(),
    ) -> None:
        self._methods = methods
        self._heavy = heavy
        self._streams = streams or {}
        self._write_timeout = write_timeout_s
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout_s
        self.refused = 0
        self._uid = os.getuid() if uid is None else uid
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # A few large reads at a time: a crowd of them never stalls the loop (nor the timer).
        self._working = asyncio.Semaphore(MAX_WORKING_READS)

    async def start(self, sock: socket.socket) -> None:
        # The loop listens again on the socket it is given: with this backlog too.
        self._server = await asyncio.start_unix_server(self._on_connect, sock=sock, backlog=BACKLOG)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            for task in list(self._connections):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._max_connections:
            await self._refuse(writer)
            return
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # The server is closing. This task is the connection's outermost one: end
            # it normally, because Python 3.11's stream protocol logs cancelled ones.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """Tell a connection over the limit why, and close it (it holds no slot)."""
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning(
                "refused connections over the limit",
                limit=self._max_connections,
                refused=self.refused,
            )
        error = TooManyConnections(
            f"gatewayd already serves its limit of {self._max_connections} connections "
            "(gateway.max_connections); try again shortly"
        )
        with contextlib.suppress(Exception):
            writer.write(encode_error(None, error))
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        """The next chunk; TimeoutError once no complete request came by ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(reader.read(_READ_CHUNK), remaining)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != self._uid:
            log.warning("refused a connection from another user", uid=uid)
            error = PermissionDenied(
                f"permission denied: this daemon serves uid {self._uid}, not uid {uid}"
            )
            writer.write(encode_error(None, error))
            await writer.drain()
            return
        loop = asyncio.get_running_loop()

        async def write(frame: bytes) -> None:
            writer.write(frame)
            await asyncio.wait_for(writer.drain(), self._write_timeout)

        async def notify(params: dict[str, Any]) -> None:
            await write(encode_notification("event", params))

        decoder = FrameDecoder()
        deadline = loop.time() + self._idle_timeout
        while True:
            data = await self._read(reader, deadline)
            if not data:
                return
            frames = decoder.feed(data)
            for frame in frames:
                if isinstance(frame, Oversized):
                    reply: bytes | None = encode_error(None, oversized_error(frame.size))
                else:
                    reply = await self._answer(frame, notify)
                if reply is not None:
                    await write(reply)
            if frames:
                deadline = loop.time() + self._idle_timeout

    async def _answer(self, frame: bytes, notify: Send) -> bytes | None:
        try:
            request = parse_request(frame)
        except RequestError as exc:
            return encode_error(exc.request_id, exc.error)
        stream = self._streams.get(request.method)
        if stream is not None:
            try:
                return encode_result(request.id, await stream(request.params, notify))
            except GatewaydError as exc:
                return encode_error(request.id, exc)
            except (ConnectionError, TimeoutError):
                raise  # the peer went away, or stopped reading: nobody to answer
            except Exception as exc:
                log.exception("an RPC stream failed", method=request.method)
                return encode_error(
                    request.id, GatewaydError(f"internal error in {request.method}: {exc}")
                )
        handler = self._methods.get(request.method)
        try:
            if handler is None:
                raise MethodNotFound(f"method not found: {request.method!r}")
            if request.method in self._heavy:
                async with self._working:  # the reply is written after, outside the limit
                    result = await handler(request.params)
            else:
                result = await handler(request.params)
        except GatewaydError as exc:
            if request.notification:
                return None
            return encode_error(request.id, exc)
        except Exception as exc:
            log.exception("an RPC method failed", method=request.method)
            if request.notification:
                return None
            return encode_error(
                request.id, GatewaydError(f"internal error in {request.method}: {exc}")
            )
        if request.notification:
            return None
        return encode_result(request.id, result)
