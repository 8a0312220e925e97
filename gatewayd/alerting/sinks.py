"""Delivering one alert to one sink, once: a command's stdin, or a webhook's POST.

Each attempt ends within the sink's timeout, however the other end behaves:
a command that hangs is killed with its process group, a server that does
not answer is given up on. A failure is raised as :class:`DeliveryFailed`
with a message that says what the other end did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import anyio

from gatewayd.alerting.values import SinkKind, SinkSpec

if TYPE_CHECKING:
    import httpx

_ERROR_TAIL = 300  # characters of a command's stderr kept in the error


class DeliveryFailed(Exception):
    """One attempt to deliver an alert failed; ``str()`` says how."""


@contextlib.asynccontextmanager
async def http_client(sinks: list[SinkSpec]) -> AsyncIterator[httpx.AsyncClient | None]:
    """The HTTP client the webhooks among ``sinks`` share (none without a webhook: httpx is
    loaded only for them)."""
    if not any(s.kind is SinkKind.WEBHOOK for s in sinks):
        yield None
        return
    import httpx

    async with httpx.AsyncClient() as client:
        yield client


async def deliver(
    sink: SinkSpec, body: bytes, *, env: Mapping[str, str], client: httpx.AsyncClient | None
) -> None:
    """Deliver ``body`` (the alert's JSON) to ``sink``, or raise :class:`DeliveryFailed`."""
    if sink.kind is SinkKind.COMMAND:
        await _to_command(sink, body, env)
    else:
        assert client is not None
        await _to_webhook(sink, body, env, client)


async def _to_command(sink: SinkSpec, body: bytes, env: Mapping[str, str]) -> None:
    try:
        # Shielded: a cancellation in the middle of a spawn would leave the child unreaped.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                list(sink.command),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,  # its own group: killed with what it started
            )
    except OSError as exc:
        raise DeliveryFailed(f"cannot start {sink.command[0]!r}: {exc.strerror or exc}") from None
    stderr = b""
    try:
        with anyio.fail_after(sink.timeout_s):
            assert process.stdin is not None and process.stderr is not None
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await process.stdin.send(body)
            await process.stdin.aclose()
            async for chunk in process.stderr:
                stderr = (stderr + chunk)[-4096:]
            code = await process.wait()
    except TimeoutError:
        raise DeliveryFailed(
            f"{sink.command[0]!r} did not end within {sink.timeout_s:g}s"
        ) from None
    finally:
        with anyio.CancelScope(shield=True):  # reaped even when the attempt is cancelled
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            await process.aclose()
    if code != 0:
        tail = stderr.decode("utf-8", "replace").strip()[-_ERROR_TAIL:]
        raise DeliveryFailed(f"{sink.command[0]!r} exited {code}" + (f": {tail}" if tail else ""))


async def _to_webhook(
    sink: SinkSpec, body: bytes, env: Mapping[str, str], client: httpx.AsyncClient
) -> None:
    import httpx

    assert sink.webhook is not None
    headers = {"Content-Type": "application/json", "User-Agent": "gatewayd-alerts"}
    if sink.token_env is not None:
        token = env.get(sink.token_env)
        if not token:
            raise DeliveryFailed(f"the variable {sink.token_env} that holds the token is not set")
        headers["Authorization"] = f"Bearer {token}"
    try:
        # httpx's timeout bounds each phase; the scope bounds the whole attempt.
        with anyio.fail_after(sink.timeout_s):
            response = await client.post(
                sink.webhook, content=body, headers=headers, timeout=sink.timeout_s
            )
    except TimeoutError:
        raise DeliveryFailed(f"no answer within {sink.timeout_s:g}s") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        text = response.text.strip()[:_ERROR_TAIL]
        raise DeliveryFailed(f"HTTP {response.status_code}" + (f": {text}" if text else ""))
