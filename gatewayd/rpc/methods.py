"""The RPC methods of DESIGN.md, mapped onto :class:`gatewayd.api.Gateway`.

Each method checks the types of its params and names the one that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio.to_thread
import orjson

from gatewayd import bounds
from gatewayd.api import VIEWS_ON_LOOP, Gateway
from gatewayd.codec import run_to_json
from gatewayd.errors import InvalidInput
from gatewayd.rpc.protocol import RawJson
from gatewayd.rpc.server import Handler, Send, StreamHandler

T = TypeVar("T")

DEFAULT_EVENTS_LIMIT = 100
# The large reads: the server computes only a few of them at once (writes spend
# their time waiting for the disk, and waits for a run to end compute nothing).
HEAVY = frozenset({"cron.list", "cron.runs", "sessions.list", "sessions.get", "gateway.status"})
EVENTS_LIMIT = bounds.Count(low=0, high=10_000)


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


def build_methods(gateway: Gateway) -> dict[str, Handler]:
    """The method table served on the socket."""

    async def status(params: dict[str, Any]) -> Any:
        _known(params, "gateway.status")
        return await gateway.status()

    async def probe_lag(params: dict[str, Any]) -> Any:
        _known(params, "gateway.probe_lag", "seconds")
        seconds = _seconds(params, "seconds", "gateway.probe_lag", 1.0, bounds.PROBE_LAG)
        assert seconds is not None
        return await gateway.probe_lag(seconds)

    async def cron_add(params: dict[str, Any]) -> Any:
        job = await gateway.add_job(params)
        return await gateway.job_view(job)

    async def cron_add_many(params: dict[str, Any]) -> Any:
        _known(params, "cron.add_many", "jobs")
        jobs = await gateway.add_jobs(params.get("jobs"))
        return {"ok": True, "added": [{"id": j.id, "name": j.name} for j in jobs]}

    async def cron_list(params: dict[str, Any]) -> Any:
        _known(params, "cron.list", "all", "limit", "after")
        include = _bool(params, "all", "cron.list", False)
        limit = _limit(params, "cron.list", bounds.JOB_PAGE)
        after = _optional_str(params, "after", "cron.list")
        jobs = await gateway.list_jobs(include_disabled=include, limit=limit, after=after)
        if len(jobs) <= VIEWS_ON_LOOP:
            return jobs
        return RawJson(await anyio.to_thread.run_sync(orjson.dumps, jobs))

    async def cron_get(params: dict[str, Any]) -> Any:
        _known(params, "cron.get", "job")
        return await gateway.job_view(await gateway.job(_str(params, "job", "cron.get")))

    async def cron_update(params: dict[str, Any]) -> Any:
        _known(params, "cron.update", "job", "patch")
        if not isinstance(params.get("patch"), dict):
            raise InvalidInput("invalid params: cron.update needs 'patch' as an object")
        job = await gateway.update_job(_str(params, "job", "cron.update"), params["patch"])
        return await gateway.job_view(job)

    async def cron_remove(params: dict[str, Any]) -> Any:
        _known(params, "cron.remove", "job")
        job = await gateway.remove_job(_str(params, "job", "cron.remove"))
        return {"ok": True, "removed": job.id, "name": job.name}

    async def cron_enable(params: dict[str, Any]) -> Any:
        _known(params, "cron.enable", "job")
        job = await gateway.set_enabled(_str(params, "job", "cron.enable"), True)
        return await gateway.job_view(job)

    async def cron_disable(params: dict[str, Any]) -> Any:
        _known(params, "cron.disable", "job")
        job = await gateway.set_enabled(_str(params, "job", "cron.disable"), False)
        return await gateway.job_view(job)

    async def cron_run(params: dict[str, Any]) -> Any:
        _known(params, "cron.run", "job", "due")
        due = _bool(params, "due", "cron.run", False)
        return await gateway.run_job(_str(params, "job", "cron.run"), due=due)

    async def cron_cancel(params: dict[str, Any]) -> Any:
        _known(params, "cron.cancel", "job", "run_id")
        if ("job" in params) == ("run_id" in params):
            raise InvalidInput(
                "invalid params: cron.cancel needs one of 'job' (an id or a name) or 'run_id'"
            )
        name = "job" if "job" in params else "run_id"
        ref = _str(params, name, "cron.cancel")
        return [run_to_json(r) for r in await gateway.cancel(ref, run_only=name == "run_id")]

    async def cron_runs(params: dict[str, Any]) -> Any:
        _known(params, "cron.runs", "job", "limit", "before")
        limit = _limit(params, "cron.runs", bounds.RUN_PAGE)
        before = _optional_str(params, "before", "cron.runs")
        return await gateway.runs(_str(params, "job", "cron.runs"), limit=limit, before=before)

    async def runs_get(params: dict[str, Any]) -> Any:
        _known(params, "runs.get", "run_id")
        return run_to_json(await gateway.run(_str(params, "run_id", "runs.get")))

    async def runs_last(params: dict[str, Any]) -> Any:
        _known(params, "runs.last", "job")
        return await gateway.last_run(_str(params, "job", "runs.last"))

    async def runs_wait(params: dict[str, Any]) -> Any:
        _known(params, "runs.wait", "run_id", "timeout_s")
        run_id = _str(params, "run_id", "runs.wait")
        timeout = _seconds(params, "timeout_s", "runs.wait", None, bounds.WAIT_TIMEOUT)
        return run_to_json(await gateway.wait_run(run_id, timeout_s=timeout))

    async def sessions_list(params: dict[str, Any]) -> Any:
        _known(params, "sessions.list", "limit", "before")
        limit = _limit(params, "sessions.list", bounds.SESSION_PAGE)
        before = _optional_str(params, "before", "sessions.list")
        return await gateway.sessions(limit=limit, before=before)

    async def sessions_get(params: dict[str, Any]) -> Any:
        _known(params, "sessions.get", "key")
        return await gateway.session(_str(params, "key", "sessions.get"))

    return {
        "gateway.status": status,
        "gateway.probe_lag": probe_lag,
        "cron.add": cron_add,
        "cron.add_many": cron_add_many,
        "cron.list": cron_list,
        "cron.get": cron_get,
        "cron.update": cron_update,
        "cron.remove": cron_remove,
        "cron.enable": cron_enable,
        "cron.disable": cron_disable,
        "cron.run": cron_run,
        "cron.cancel": cron_cancel,
        "cron.runs": cron_runs,
        "runs.get": runs_get,
        "runs.last": runs_last,
        "runs.wait": runs_wait,
        "sessions.list": sessions_list,
        "sessions.get": sessions_get,
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
        return await gateway.events(send, since=since, limit=limit, follow=follow)

    return {"events.subscribe": events_subscribe}
