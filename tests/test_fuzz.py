"""No input reachable over the RPC produces an internal error (-32603), nor kills the server.

A property-based fuzz suite (hypothesis) over every RPC method, through a real
Unix socket to the real method table, Gateway, pipeline and a real SQLite
store (the clock and the runner are the in-process fakes, so that runs end at
once). It also fuzzes the parsers of durations, sizes and times that the CLI
and the daemon share. Each property runs ``GATEWAYD_FUZZ_EXAMPLES`` examples
(100 by default; raise it to search harder).
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from anyio.from_thread import start_blocking_portal
from gatewayd.durations import (
    MAX_DURATION_S,
    parse_duration,
    parse_size,
    parse_time,
    parse_when,
)
from gatewayd.errors import RPC_INTERNAL, InvalidInput
from gatewayd.rpc.methods import build_methods, build_streams
from gatewayd.rpc.server import RpcServer, bind_unix_socket
from gatewayd.store import SQLiteStore
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.harness import open_harness

T = TypeVar("T")
EXAMPLES = int(os.environ.get("GATEWAYD_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# The values users and scripts send, good and bad: the edges of every range.
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 59, 60, 86400, 2**63, 2**63 - 1, 2**64, 10**20]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e20, 1e308, -1e308, 5e-324, 0.0005, -0.0]),
)
WORDS = st.sampled_from(
    [
        "",
        " ",
        "\0",
        "a\0b",
        "1000000w",
        "+99999999999d",
        "+20m",
        "-1s",
        "1h30m",
        "0",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "2026-03-01T12:00:00Z",
        "1969-12-31T23:59:59Z",
        "59-0 * * * *",
        "*/100000000000000000000 * * * *",
        "* * * * *",
        "*/10 * * * * *",
        "@daily",
        "Europe/Berlin",
        "Mars/Olympus",
        "UTC",
        "exec",
        "agent_turn",
        "system_event",
        "cron",
        "every",
        "at",
        "skip",
        "queue",
        "replace",
        "allow",
        "16MiB",
        "kill",
        "keep",
        "default",
        "main",
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, WORDS, st.text(max_size=40))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
SCHEDULE_KEYS = ["kind", "expr", "tz", "every_s", "at", "anchor"]
PAYLOAD_KEYS = ["kind", "command", "shell", "cwd", "env", "message", "agent", "text"]
SPEC_KEYS = [
    "name",
    "enabled",
    "timeout_s",
    "overlap",
    "catchup",
    "catchup_window_s",
    "stagger_s",
    "session",
    "delete_after_run",
    "max_output",
    "leftovers",
]


def shaped(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


RETRY = shaped(["max_attempts", "backoff_s", "max_backoff_s"], JSON)
# Job specs close enough to valid that they reach the deep checks.
SPECS = st.builds(
    lambda top, schedule, payload, retry: {
        **top,
        "schedule": schedule,
        "payload": payload,
        "retry": retry,
    },
    shaped(SPEC_KEYS, JSON),
    st.one_of(shaped(SCHEDULE_KEYS, SCALARS), JSON),
    st.one_of(shaped(PAYLOAD_KEYS, SCALARS), JSON),
    st.one_of(RETRY, JSON),
)
PARAMS: dict[str, list[str]] = {
    "gateway.status": [],
    "gateway.probe_lag": ["seconds"],
    "cron.add": ["name", "schedule", "payload", *SPEC_KEYS],
    "cron.add_many": ["jobs"],
    "cron.list": ["all", "limit", "after"],
    "cron.get": ["job"],
    "cron.update": ["job", "patch"],
    "cron.remove": ["job"],
    "cron.enable": ["job"],
    "cron.disable": ["job"],
    "cron.run": ["job", "due"],
    "cron.cancel": ["job", "run_id"],
    "cron.runs": ["job", "limit", "before"],
    "runs.get": ["run_id"],
    "runs.last": ["job"],
    "runs.wait": ["run_id", "timeout_s"],
    "sessions.list": ["limit", "before"],
    "sessions.get": ["key"],
    "events.subscribe": ["since", "limit", "follow"],
}
# A job that exists, so that methods on a job reach past the lookup.
KNOWN = "known"


def params_for(method: str) -> st.SearchStrategy[dict[str, Any]]:
    names = [*PARAMS[method], "extra"]
    values: dict[str, st.SearchStrategy[Any]] = dict.fromkeys(names, JSON)
    if "job" in values:
        values["job"] = st.one_of(st.just(KNOWN), JSON)
    if method == "cron.add":
        return st.one_of(SPECS, shaped(names, JSON))
    if method == "cron.add_many":
        values["jobs"] = st.one_of(st.lists(SPECS, max_size=3), JSON)
    if method == "cron.update":
        values["patch"] = st.one_of(SPECS, JSON)
    return st.fixed_dictionaries({}, optional=values)


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Path]:
    """The real method table served on a real socket, over a real SQLite store."""
    store = SQLiteStore(tmp_path / "gatewayd.db")
    async with open_harness(tmp_path, store=store) as h:
        h.runner.auto_finish = True
        await h.add(name=KNOWN, every="1h", command="true")
        path = tmp_path / "fuzz.sock"
        server = RpcServer(methods=build_methods(h.gateway), streams=build_streams(h.gateway))
        await server.start(bind_unix_socket(path))
        try:
            yield path
        finally:
            await server.close()
            await store.close()


@pytest.fixture(scope="module")
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with start_blocking_portal() as portal:
        cm = portal.wrap_async_context_manager(serving(tmp_path_factory.mktemp("fuzz")))
        with cm as path:
            yield path


def answer(path: Path, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The error a request gets (``None`` for a result), as any client could send it.

    The frame is encoded by the standard library, which writes integers of any
    size: the daemon must cope with what other clients send.
    """
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(frame.encode() + b"\n")
        with sock.makefile("rb") as reader:
            while True:
                line = reader.readline()
                assert line, "the server closed the connection instead of answering"
                body = json.loads(line)
                if "id" in body:
                    error: dict[str, Any] | None = body.get("error")
                    return error


class TestRpcFuzz:
    @pytest.mark.parametrize("method", sorted(PARAMS))
    def test_no_input_gets_an_internal_error(self, method: str, socket_path: Path) -> None:
        """I11: whatever params a method is sent, it answers with a result or an error
        naming the problem (never -32603), and the server goes on serving."""

        @FUZZ
        @given(params=params_for(method))
        def check(params: dict[str, Any]) -> None:
            # Valid waits that would only make the suite slow, not find anything.
            if method == "gateway.probe_lag":
                seconds = params.get("seconds")
                assume(not (isinstance(seconds, int | float) and seconds > 0.05))
            if method == "events.subscribe":
                assume(params.get("follow") is not True)
            if method == "runs.wait":
                assume("timeout_s" not in params)
            error = answer(socket_path, method, params)
            assert error is None or error["code"] != RPC_INTERNAL, (method, params, error)

        check()
        assert answer(socket_path, "gateway.status", {}) is None


def _finite_in(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def parsed(parse: Callable[[], T]) -> T | InvalidInput:
    """What a parser gives: its value, or the InvalidInput it raised (any other escapes)."""
    try:
        return parse()
    except InvalidInput as exc:
        return exc


class TestParserFuzz:
    """The parsers users type into: a value, or InvalidInput naming the field; nothing else."""

    @FUZZ
    @given(text=st.one_of(st.text(max_size=30), JSON))
    def test_durations(self, text: Any) -> None:
        seconds = parsed(lambda: parse_duration(text, what="every"))
        if isinstance(seconds, InvalidInput):
            assert seconds.message.startswith("every: ")
        else:
            assert _finite_in(seconds, 0, MAX_DURATION_S)

    @FUZZ
    @given(text=st.one_of(st.text(max_size=30), JSON))
    def test_sizes(self, text: Any) -> None:
        size = parsed(lambda: parse_size(text, what="max_output"))
        if isinstance(size, InvalidInput):
            assert size.message.startswith("max_output: ")
        else:
            assert size >= 0

    @FUZZ
    @given(
        text=st.one_of(
            st.text(max_size=30),
            st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
            JSON,
        )
    )
    def test_times(self, text: Any) -> None:
        now = datetime(2026, 3, 1, tzinfo=UTC)
        for value in (
            parsed(lambda: parse_time(text, what="at")),
            parsed(lambda: parse_when(text, now=now, what="at")),
        ):
            if isinstance(value, InvalidInput):
                assert value.message.startswith("at: ")
            else:
                assert value.tzinfo is not None
