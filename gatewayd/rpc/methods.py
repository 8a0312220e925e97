"""The RPC methods of DESIGN.md, mapped onto :class:`gatewayd.api.gateway.Gateway`.

Each method checks the types of its params and names the one that is wrong, calls
one operation, and shapes its answer with :mod:`gatewayd.views`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson

from gatewayd import bounds, views
from gatewayd.api.gateway import Gateway
from gatewayd.api.values import JobState
from gatewayd.durations import parse_time
from gatewayd.errors import InvalidInput
from gatewayd.model import UTC_ZONE
from gatewayd.rpc.protocol import RawJson
from gatewayd.rpc.server import Handler, Send, StreamHandler

T = TypeVar("T")

DEFAULT_EVENTS_LIMIT = 100
# The large reads: the server computes only a few of them at once (writes spend
# their time waiting for the disk, and waits for a run to end compute nothing).
HEAVY = frozenset(
    {
        "cron.list",
        "cron.runs",
        "cron.why",
        "alerts.list",
        "sessions.list",
        "sessions.get",
        "gateway.status",
    }
)
EVENTS_LIMIT = bounds.Count(low=0, high=10_000)
# Job lists longer than this are shaped and encoded on a worker thread, so that
# the timer keeps time.
VIEWS_ON_LOOP = 200


def _known(params: Mapping[str, Any], method: str, *names: str) -> None:
    extra = sorted(set(params) - set(names))
    if extra:
        raise InvalidInput(f"invalid params: {method} does not take {extra[0]!r}")


def _got(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _str(params: Mapping[str, Any], name: str, method: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"invalid params: {method} needs {name!r} as a string, got {_got(value)}",
            data={"field": name},
        )
    return value


def _optional_str(params: Mapping[str, Any], name: str, method: str) -> str | None:
    return None if params.get(name) is None else _str(params, name, method)


def _bool(params: Mapping[str, Any], name: str, method: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(
            f"invalid params: {method} needs {name!r} as true or false, got {_got(value)}",
            data={"field": name},
        )
    return value


def _in_range(check: Callable[[], T], method: str) -> T:
    try:
        return check()
    except InvalidInput as exc:
        raise InvalidInput(f"invalid params: {method}: {exc.message}", data=exc.data) from None


def _count(
    params: Mapping[str, Any], name: str, method: str, default: int, bound: bounds.Count
) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"invalid params: {method} needs {name!r} as an integer, got {_got(value)}",
            data={"field": name},
        )
    return _in_range(lambda: bound.check(value, name), method)


def _seconds(
    params: Mapping[str, Any], name: str, method: str, default: float | None, span: bounds.Span
) -> float | None:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(
            f"invalid params: {method} needs {name!r} as a number of seconds, got {_got(value)}",
            data={"field": name},
        )
    return _in_range(lambda: span.check(float(value), name), method)


def _limit(params: Mapping[str, Any], method: str, page: bounds.Page) -> int:
    """A page's ``limit``: an integer (its range is the operation's to check)."""
    value = params.get("limit", page.default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"invalid params: {method} needs 'limit' as an integer, got {_got(value)}",
            data={"field": "limit"},
        )
    return value


async def _jobs_json(states: list[JobState]) -> Any:
    if len(states) <= VIEWS_ON_LOOP:
        return [views.job_to_json(s) for s in states]

    def encode() -> bytes:
        return orjson.dumps([views.job_to_json(s) for s in states])

    return RawJson(await anyio.to_thread.run_sync(encode))


class _Methods:
    """The handlers of the method table, each a method of one RPC name."""

    def __init__(self, gateway: Gateway) -> None:
        self._reads, self._jobs, self._runs = gateway.reads, gateway.jobs, gateway.runs
        self._imports = gateway.imports

    async def _job_json(self, job_ref: str) -> Any:
        return views.job_to_json(await self._reads.job_state(await self._reads.job(job_ref)))

    async def status(self, params: dict[str, Any]) -> Any:
        _known(params, "gateway.status")
        return views.status_to_json(await self._reads.status())

    async def probe_lag(self, params: dict[str, Any]) -> Any:
        _known(params, "gateway.probe_lag", "seconds")
        seconds = _seconds(params, "seconds", "gateway.probe_lag", 1.0, bounds.PROBE_LAG)
        assert seconds is not None
        return views.lag_probe_to_json(await self._reads.probe_lag(seconds))

    async def cron_add(self, params: dict[str, Any]) -> Any:
        job = await self._jobs.add(params)
        return views.job_to_json(await self._reads.job_state(job))

    async def cron_add_many(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.add_many", "jobs")
        return views.jobs_added_to_json(await self._jobs.add_many(params.get("jobs")))

    async def cron_list(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.list", "all", "limit", "after")
        include = _bool(params, "all", "cron.list", False)
        limit = _limit(params, "cron.list", bounds.JOB_PAGE)
        after = _optional_str(params, "after", "cron.list")
        return await _jobs_json(
            await self._reads.list_jobs(include_disabled=include, limit=limit, after=after)
        )

    async def cron_get(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.get", "job")
        return await self._job_json(_str(params, "job", "cron.get"))

    async def cron_update(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.update", "job", "patch")
        if not isinstance(params.get("patch"), dict):
            raise InvalidInput(
                "invalid params: cron.update needs 'patch' as an object", data={"field": "patch"}
            )
        job = await self._jobs.update(_str(params, "job", "cron.update"), params["patch"])
        return views.job_to_json(await self._reads.job_state(job))

    async def cron_remove(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.remove", "job")
        return views.job_removed_to_json(
            await self._jobs.remove(_str(params, "job", "cron.remove"))
        )

    async def cron_enable(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.enable", "job")
        job = await self._jobs.set_enabled(_str(params, "job", "cron.enable"), True)
        return views.job_to_json(await self._reads.job_state(job))

    async def cron_disable(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.disable", "job")
        job = await self._jobs.set_enabled(_str(params, "job", "cron.disable"), False)
        return views.job_to_json(await self._reads.job_state(job))

    async def cron_run(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.run", "job", "due")
        due = _bool(params, "due", "cron.run", False)
        request = await self._runs.request(_str(params, "job", "cron.run"), due=due)
        return views.run_request_to_json(request)

    async def cron_cancel(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.cancel", "job", "run_id")
        if ("job" in params) == ("run_id" in params):
            raise InvalidInput(
                "invalid params: cron.cancel needs one of 'job' (an id or a name) or 'run_id'"
            )
        name = "job" if "job" in params else "run_id"
        ref = _str(params, name, "cron.cancel")
        return [
            views.run_to_json(r) for r in await self._runs.cancel(ref, run_only=name == "run_id")
        ]

    async def cron_next(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.next", "job", "count", "from")
        count = params.get("count", bounds.NEXT_SLOTS.default)
        after = params.get("from")
        if after is not None:
            after = bounds.check_time(parse_time(after, what="from"), "from")
        job = await self._reads.job(_str(params, "job", "cron.next"))
        slots = self._reads.upcoming(job, count=count, after=after)
        return views.upcoming_to_json(slots, job.schedule)

    async def cron_why(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.why", "job", "since")
        since = params.get("since")
        if since is not None:
            since = bounds.check_time(parse_time(since, what="since"), "since")
        job = await self._reads.job(_str(params, "job", "cron.why"))
        return views.why_to_json(await self._reads.why(job, since=since))

    async def alerts_list(self, params: dict[str, Any]) -> Any:
        _known(params, "alerts.list", "job", "limit")
        limit = _limit(params, "alerts.list", bounds.ALERT_PAGE)
        ref = _optional_str(params, "job", "alerts.list")
        job = None if ref is None else await self._reads.job(ref)
        return [views.alert_to_json(a) for a in await self._reads.alerts(job=job, limit=limit)]

    async def import_openclaw(self, params: dict[str, Any]) -> Any:
        method = "import.openclaw"
        _known(params, method, "dir", "dry_run", "alert_sink", "host_zone")
        directory = Path(_str(params, "dir", method))
        if not directory.is_absolute():
            raise InvalidInput(
                f"invalid params: {method} needs 'dir' as an absolute path, got {str(directory)!r}",
                data={"field": "dir"},
            )
        report = await self._imports.openclaw(
            directory,
            host_zone=_optional_str(params, "host_zone", method) or UTC_ZONE,
            alert_sink=_optional_str(params, "alert_sink", method),
            dry_run=_bool(params, "dry_run", method, False),
        )
        return views.import_report_to_json(report)

    async def cron_runs(self, params: dict[str, Any]) -> Any:
        _known(params, "cron.runs", "job", "limit", "before")
        limit = _limit(params, "cron.runs", bounds.RUN_PAGE)
        before = _optional_str(params, "before", "cron.runs")
        page = await self._runs.history(
            _str(params, "job", "cron.runs"), limit=limit, before=before
        )
        return [views.run_to_json(r) for r in page]

    async def runs_get(self, params: dict[str, Any]) -> Any:
        _known(params, "runs.get", "run_id")
        return views.run_to_json(await self._runs.get(_str(params, "run_id", "runs.get")))

    async def runs_last(self, params: dict[str, Any]) -> Any:
        _known(params, "runs.last", "job")
        run = await self._runs.last(_str(params, "job", "runs.last"))
        return None if run is None else views.run_to_json(run)

    async def runs_wait(self, params: dict[str, Any]) -> Any:
        _known(params, "runs.wait", "run_id", "timeout_s")
        run_id = _str(params, "run_id", "runs.wait")
        timeout = _seconds(params, "timeout_s", "runs.wait", None, bounds.WAIT_TIMEOUT)
        return views.run_to_json(await self._runs.wait(run_id, timeout_s=timeout))

    async def sessions_list(self, params: dict[str, Any]) -> Any:
        _known(params, "sessions.list", "limit", "before")
        limit = _limit(params, "sessions.list", bounds.SESSION_PAGE)
        before = _optional_str(params, "before", "sessions.list")
        return [
            views.session_to_json(s) for s in await self._reads.sessions(limit=limit, before=before)
        ]

    async def sessions_get(self, params: dict[str, Any]) -> Any:
        _known(params, "sessions.get", "key")
        return views.session_state_to_json(
            await self._reads.session(_str(params, "key", "sessions.get"))
        )


def build_methods(gateway: Gateway) -> dict[str, Handler]:
    """The method table served on the socket."""
    m = _Methods(gateway)
    return {
        "gateway.status": m.status,
        "gateway.probe_lag": m.probe_lag,
        "cron.add": m.cron_add,
        "cron.add_many": m.cron_add_many,
        "cron.list": m.cron_list,
        "cron.get": m.cron_get,
        "cron.update": m.cron_update,
        "cron.remove": m.cron_remove,
        "cron.enable": m.cron_enable,
        "cron.disable": m.cron_disable,
        "cron.run": m.cron_run,
        "cron.cancel": m.cron_cancel,
        "cron.runs": m.cron_runs,
        "cron.next": m.cron_next,
        "cron.why": m.cron_why,
        "alerts.list": m.alerts_list,
        "import.openclaw": m.import_openclaw,
        "runs.get": m.runs_get,
        "runs.last": m.runs_last,
        "runs.wait": m.runs_wait,
        "sessions.list": m.sessions_list,
        "sessions.get": m.sessions_get,
    }


def build_streams(gateway: Gateway) -> dict[str, StreamHandler]:
    """The streaming methods: notifications, then one response that ends the stream."""

    async def events_subscribe(params: dict[str, Any], send: Send) -> Any:
        _known(params, "events.subscribe", "since", "limit", "follow")
        since = params.get("since")
        if since is not None:
            since = _count(params, "since", "events.subscribe", 0, bounds.EVENT_SEQ)
        limit = _count(params, "limit", "events.subscribe", DEFAULT_EVENTS_LIMIT, EVENTS_LIMIT)
        follow = _bool(params, "follow", "events.subscribe", False)
        end = await gateway.reads.events(send, since=since, limit=limit, follow=follow)
        return views.stream_end_to_json(end)

    return {"events.subscribe": events_subscribe}
