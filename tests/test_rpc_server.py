"""The RPC server on a real Unix socket, in process: permissions and peer checks."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest
from gatewayd.errors import RPC_FORBIDDEN, DaemonUnreachable, InvalidInput, StartupError
from gatewayd.rpc.client import RpcClient
from gatewayd.rpc.server import RpcServer, bind_unix_socket


async def echo(params: dict[str, Any]) -> Any:
    return params


async def boom(params: dict[str, Any]) -> Any:
    raise RuntimeError("kaboom")


async def refuse(params: dict[str, Any]) -> Any:
    raise InvalidInput("invalid params: nope")


def request(path: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    with RpcClient(path) as client:
        return client.call(method, params)


class TestServer:
    async def test_mode_0600_and_calls(self, tmp_path: Path) -> None:
        """The socket file is created private, and methods are answered in order."""
        path = tmp_path / "s.sock"
        server = RpcServer(methods={"echo": echo, "boom": boom, "refuse": refuse})
        await server.start(bind_unix_socket(path))
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert await anyio.to_thread.run_sync(request, path, "echo", {"a": 1}) == {"a": 1}
            with pytest.raises(Exception, match="internal error in boom: kaboom"):
                await anyio.to_thread.run_sync(request, path, "boom")
            with pytest.raises(InvalidInput, match="nope"):
                await anyio.to_thread.run_sync(request, path, "refuse")
            assert await anyio.to_thread.run_sync(request, path, "echo") == {}
        finally:
            await server.close()

    async def test_other_users_are_refused(self, tmp_path: Path) -> None:
        """A peer whose uid is not the daemon's gets an error and nothing is served.

        Connecting as another user needs privileges the tests may not have, so
        the server is told to serve another uid instead: the check is the same.
        """
        path = tmp_path / "s.sock"
        server = RpcServer(methods={"echo": echo}, uid=os.getuid() + 1)
        await server.start(bind_unix_socket(path))
        try:

            def attempt() -> dict[str, Any]:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(5)
                    sock.connect(str(path))
                    # The refusal comes at once, before any request is read.
                    body: dict[str, Any] = orjson.loads(sock.makefile("rb").readline())
                    return body

            reply = await anyio.to_thread.run_sync(attempt)
            assert "permission denied" in reply["error"]["message"]
            assert (reply["error"]["code"], reply["error"]["data"]["kind"]) == (
                RPC_FORBIDDEN,
                "forbidden",
            )
            assert "result" not in reply
        finally:
            await server.close()

    async def test_stale_socket_is_replaced_but_other_files_are_not(self, tmp_path: Path) -> None:
        path = tmp_path / "s.sock"
        stale = bind_unix_socket(path)
        stale.close()
        bind_unix_socket(path).close()
        regular = tmp_path / "file"
        regular.write_text("keep me")
        with pytest.raises(StartupError, match="is not a socket"):
            bind_unix_socket(regular)
        assert regular.read_text() == "keep me"

    async def test_socket_path_too_long(self, tmp_path: Path) -> None:
        with pytest.raises(StartupError, match="longer than"):
            bind_unix_socket(tmp_path / ("x" * 120))

    async def test_client_without_daemon(self, tmp_path: Path) -> None:
        with pytest.raises(DaemonUnreachable, match="no gatewayd is listening"):
            await anyio.to_thread.run_sync(request, tmp_path / "none.sock", "echo")
