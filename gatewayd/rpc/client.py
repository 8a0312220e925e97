"""A small blocking client for the CLI: one connection, requests answered in order."""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from gatewayd.errors import DaemonUnreachable, ProtocolError, error_from_rpc
from gatewayd.rpc.protocol import encode_request

_UNREACHABLE = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.EACCES}


class RpcClient:
    """Calls methods of the daemon listening on ``socket_path``."""

    def __init__(self, socket_path: Path, *, timeout_s: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self._timeout = timeout_s
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._ids = itertools.count(1)

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(os.fspath(self.socket_path))
        except OSError as exc:
            sock.close()
            if exc.errno in _UNREACHABLE or isinstance(exc, FileNotFoundError):
                raise DaemonUnreachable(
                    f"no gatewayd is listening on {self.socket_path} "
                    f"({exc.strerror or exc}); start it with `gatewayd serve` or pass "
                    "--state-dir/--socket"
                ) from None
            raise DaemonUnreachable(f"cannot reach gatewayd on {self.socket_path}: {exc}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")
        return sock

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def set_timeout(self, timeout_s: float | None) -> None:
        self._timeout = timeout_s
        if self._sock is not None:
            self._sock.settimeout(timeout_s)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The result of ``method``; raises the daemon's error as a GatewaydError."""
        sock = self._connect()
        request_id = next(self._ids)
        try:
            sock.sendall(encode_request(request_id, method, params or {}))
            return self._result(self._read(), request_id)
        except TimeoutError:
            raise DaemonUnreachable(
                f"gatewayd on {self.socket_path} did not answer {method} in time"
            ) from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise DaemonUnreachable(f"the connection to gatewayd broke: {exc}") from None

    def stream(self, method: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Each notification a streaming method sends, until its response ends the stream."""
        sock = self._connect()
        request_id = next(self._ids)
        sock.sendall(encode_request(request_id, method, params or {}))
        while True:
            body = self._read()
            if "id" in body:
                self._result(body, request_id)
                return
            yield body.get("params")

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            raise DaemonUnreachable("gatewayd closed the connection")
        body = orjson.loads(line)
        if not isinstance(body, dict):
            raise ProtocolError("gatewayd answered with something other than a JSON object")
        return body

    @staticmethod
    def _result(body: dict[str, Any], request_id: int) -> Any:
        error = body.get("error")
        if isinstance(error, dict):
            raise error_from_rpc(
                int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
            )
        if body.get("id") != request_id:
            raise ProtocolError(f"gatewayd answered request {body.get('id')}, not {request_id}")
        return body.get("result")
