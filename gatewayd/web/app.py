"""The HTTP application: read-only routes over the same operations as the CLI.

``/healthz`` answers 200 once the daemon is ready and its store takes writes,
else 503 with the reason; ``/metrics`` is the Prometheus text. With a token,
every request must carry ``Authorization: Bearer TOKEN`` (else 401).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gatewayd.web.metrics import CONTENT_TYPE, Metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """Whether the daemon serves: ``None`` if it does, else the reason it does not."""

    reason: Callable[[], str | None]


class _Bearer:
    """Refuses, with 401, a request that does not carry the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                response = Response(
                    "a bearer token is required\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="gatewayd"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def build_app(*, metrics: Metrics, health: Health, token: str | None) -> ASGIApp:
    """The application; GET (and HEAD) only: it changes nothing."""

    async def healthz(request: Request) -> Response:
        reason = health.reason()
        if reason is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    async def scrape(request: Request) -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    app: ASGIApp = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", scrape, methods=["GET"]),
        ]
    )
    return app if token is None else _Bearer(app, token)
