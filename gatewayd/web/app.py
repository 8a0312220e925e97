"""The HTTP application: read-only routes over the same operations as the CLI.

``/healthz`` answers 200 once the daemon is ready and its store takes writes,
else 503 with the reason; ``/metrics`` is the Prometheus text; ``/`` and the
job and run pages are the dashboard (:mod:`gatewayd.web.pages`), and
``/events`` the run events it follows, as server-sent events from the bus.
With a token, every request must carry ``Authorization: Bearer TOKEN`` (else
401).
"""

from __future__ import annotations

import hmac
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gatewayd import bounds, views
from gatewayd.api.gateway import Gateway
from gatewayd.api.values import JobState
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.errors import GatewaydError, NotFound
from gatewayd.events import RUN
from gatewayd.model import Job
from gatewayd.web import pages
from gatewayd.web.metrics import CONTENT_TYPE, Metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """Whether the daemon serves: ``None`` if it does, else the reason it does not."""

    reason: Callable[[], str | None]


# At most this many pages are built at once; a page built is kept this long, unless
# an event happens first (then the next request builds it again).
_BUILDING = 2
_KEPT_S = 1.0
_KEPT_PAGES = 256


class _Pages:
    """Pages built once for every client that asks within :data:`_KEPT_S` while no event
    happens, a few at a time, so that a crowd of browsers leaves the loop and the
    store's readers to the timer."""

    def __init__(self, bus: Bus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._kept: dict[str, tuple[int, float, str]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._building = anyio.CapacityLimiter(_BUILDING)

    async def get(self, key: str, build: Callable[[], Awaitable[str]]) -> str:
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # one build per page: the others wait for it, then share it
            kept = self._kept.get(key)
            seq, now = self._bus.last_seq, self._clock.monotonic()
            if kept is not None and kept[0] == seq and now - kept[1] < _KEPT_S:
                return kept[2]
            async with self._building:
                body = await build()
            if len(self._kept) >= _KEPT_PAGES:
                self._kept.clear()
            self._kept[key] = (seq, now, body)
            return body


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


def build_app(
    *,
    gateway: Gateway,
    bus: Bus,
    clock: Clock,
    metrics: Metrics,
    health: Health,
    token: str | None,
) -> ASGIApp:
    """The application; GET (and HEAD) only: it changes nothing."""
    reads, runs = gateway.reads, gateway.runs
    built = _Pages(bus, clock)

    def answer(request: Request, title: str, live: str) -> Response:
        if request.headers.get("x-gatewayd-part") == "live":
            return HTMLResponse(live)
        return HTMLResponse(pages.page(title, live))

    async def jobs(request: Request) -> Response:
        return answer(request, "jobs", await built.get("/", jobs_part))

    async def jobs_part() -> str:
        states: list[JobState] = []
        while True:
            after = states[-1].job.name if states else None
            page = await reads.list_jobs(
                include_disabled=True, limit=bounds.JOB_PAGE.largest, after=after
            )
            states.extend(page)
            if len(page) < bounds.JOB_PAGE.largest:
                break
        shown = [views.job_to_json(state) for state in states]
        return pages.jobs_part(shown, clock.now())

    async def job(request: Request) -> Response:
        found = await reads.job(request.path_params["ref"])
        live = await built.get(f"/jobs/{found.id}", partial(job_part, found))
        return answer(request, found.name, live)

    async def job_part(found: Job) -> str:
        state = await reads.job_state(found)
        history = await runs.history(found.id, limit=bounds.RUN_PAGE.largest, before=None)
        why = views.why_to_json(await reads.why(found, since=None))
        upcoming = views.upcoming_to_json(
            reads.upcoming(found, count=5, after=None), found.schedule
        )
        alerts = [views.alert_to_json(a) for a in await reads.alerts(job=found, limit=20)]
        return pages.job_part(
            views.job_to_json(state),
            [views.run_to_json(r) for r in history],
            why,
            upcoming,
            alerts,
            clock.now(),
        )

    async def run(request: Request) -> Response:
        shown = views.run_to_json(await runs.get(request.path_params["run_id"]))
        return answer(request, f"run {shown['run_id']}", pages.run_part(shown))

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            with bus.subscribe(streams=frozenset({RUN})) as subscription:
                yield ": following the runs\n\n"
                async for envelope in subscription:
                    yield f"data: {orjson.dumps(envelope).decode()}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def healthz(request: Request) -> Response:
        reason = health.reason()
        if reason is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    async def scrape(request: Request) -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, GatewaydError) else "no such page"
        return HTMLResponse(pages.page("not found", f"<p>{html.escape(message)}</p>"), 404)

    async def unavailable(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, GatewaydError) else str(exc)
        return HTMLResponse(pages.page("unavailable", f"<p>{html.escape(message)}</p>"), 503)

    app: ASGIApp = Starlette(
        routes=[
            Route("/", jobs, methods=["GET"]),
            Route("/jobs/{ref}", job, methods=["GET"]),
            Route("/runs/{run_id}", run, methods=["GET"]),
            Route("/events", events, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", scrape, methods=["GET"]),
        ],
        exception_handlers={NotFound: not_found, 404: not_found, GatewaydError: unavailable},
    )
    return app if token is None else _Bearer(app, token)
