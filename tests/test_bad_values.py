"""Every value is checked before it is stored: a refusal names the field and its range,
exits 2 (or answers -32602), and changes nothing.

Each case is one a careless or hostile user tried on a real daemon, through the
CLI or as raw JSON-RPC frames (raw, so that values no well-behaved client would
encode, like integers past 64 bits, reach the daemon too).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from gatewayd.errors import EXIT_NOT_FOUND, EXIT_USAGE, RPC_INVALID_PARAMS, RPC_NOT_FOUND
from gatewayd.testing import DaemonProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path_factory.mktemp("values") / "state") as d:
        added = d.cli("cron", "add", "--name", "keep", "--every", "1h", "--command", "true")
        assert added.code == 0, added.stderr
        yield d


def raw(daemon: DaemonProcess, method: str, params: Any) -> dict[str, Any]:
    """One request as any client could write it; the response (the connection must answer)."""
    frame = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket_path))
        sock.sendall(frame.encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline()
    assert line, "the daemon closed the connection instead of answering"
    body: dict[str, Any] = json.loads(line)
    return body


def jobs(daemon: DaemonProcess) -> Any:
    return daemon.call("cron.list", {"all": True})


EVERY = {"kind": "every", "every_s": 60}
EXEC = {"kind": "exec", "command": "true"}


class TestCliRefusals:
    @pytest.mark.parametrize(
        ("flags", "named"),
        [
            (["--every", "1h", "--catchup-window", "1000000w"], "at most 100 years"),
            (["--every", "1h", "--catchup-window", "400d"], "catchup_window_s: must be from"),
            (["--every", "1h", "--timeout", "1000000w"], "timeout"),
            (["--every", "1h", "--timeout", "31d"], "timeout_s: must be from"),
            (["--every", "367d"], "schedule.every_s: must be from 1s to 366d"),
            (["--every", "1h", "--stagger", "2d"], "stagger_s: must be from 0s to 1d"),
            (["--at", "+99999999999d"], "schedule.at"),
            (["--at", "2300-01-01T00:00:00Z"], "schedule.at: must be from 1970-01-01"),
            (["--every", "-1s"], "cannot be negative"),
            (["--every", "1m", "--tz", "Europe/Berlin"], "tz: a time zone goes only with cron"),
            (["--cron", "* * * * *", "--tz", ""], "schedule.tz: must not be empty"),
            (["--cron", "59-0 * * * *"], "runs backwards"),
            (["--cron", "*/100000000000000000000 * * * *"], "minute step"),
            (["--cron", "0 0 31 2 *"], "never fires"),
            (["--every", "1h", "--max-output", "65GiB"], "max_output: must be from"),
            (["--every", "1h", "--retry", "1000"], "retry.max_attempts: must be from 1 to 100"),
        ],
    )
    def test_refused(self, daemon: DaemonProcess, flags: list[str], named: str) -> None:
        """I11: the refusal exits 2 and names the field and its range; nothing is added."""
        before = jobs(daemon)
        result = daemon.cli("cron", "add", "--name", "bad", *flags, "--command", "true")
        assert result.code == EXIT_USAGE, result.stdout + result.stderr
        assert named in result.stderr
        assert "expected one argument" not in result.stderr
        assert jobs(daemon) == before


class TestRpcRefusals:
    @pytest.mark.parametrize(
        ("spec", "named"),
        [
            ({"schedule": {**EVERY, "every_s": 1e20}}, "schedule.every_s"),
            ({"schedule": EVERY, "stagger_s": 1e20}, "stagger_s"),
            ({"schedule": EVERY, "timeout_s": 10**30}, "timeout_s"),
            ({"schedule": EVERY, "catchup_window_s": 1e308}, "catchup_window_s"),
            ({"schedule": EVERY, "retry": {"max_attempts": 2, "backoff_s": 1e308}}, "backoff_s"),
            ({"schedule": {**EVERY, "anchor": 5}}, "schedule.anchor: expected an ISO 8601 time"),
            ({"schedule": {"kind": "at", "at": "0001-01-01T00:00:00+05:00"}}, "schedule.at"),
            ({"schedule": {"kind": "at", "at": "9999-12-31T23:59:59-05:00"}}, "schedule.at"),
            ({"schedule": {"kind": "at", "at": "2999-01-01T00:00:00Z"}}, "before 2200-01-01"),
            ({"schedule": {**EVERY, "tz": "Europe/Berlin"}}, "only to cron schedules"),
            ({"schedule": EVERY, "payload": {"kind": "exec", "command": "a\0b"}}, "NUL"),
            ({"schedule": EVERY, "payload": {"kind": "exec", "shell": "echo \0"}}, "NUL"),
            ({"schedule": EVERY, "payload": {**EXEC, "env": {"K": "v\0"}}}, "payload.env.K"),
            ({"schedule": EVERY, "payload": {**EXEC, "cwd": "/tmp\0x"}}, "payload.cwd"),
        ],
    )
    def test_refused(self, daemon: DaemonProcess, spec: dict[str, Any], named: str) -> None:
        """I11: -32602 naming the field; the job is not added."""
        before = jobs(daemon)
        body = raw(daemon, "cron.add", {"name": "bad", "payload": EXEC, **spec})
        assert body["error"]["code"] == RPC_INVALID_PARAMS, body
        assert named in body["error"]["message"], body
        assert jobs(daemon) == before

    def test_events_since_past_any_seq_is_answered(self, daemon: DaemonProcess) -> None:
        """A `since` beyond every seq gets an empty answer; one past 2^63 is refused by
        name. Either way the connection answers."""
        empty = raw(daemon, "events.subscribe", {"since": 10**15})
        assert empty["result"]["follow"] is False
        huge = raw(daemon, "events.subscribe", {"since": 10**30})
        assert huge["error"]["code"] == RPC_INVALID_PARAMS
        assert "since" in huge["error"]["message"]

    def test_cancel_names_what_it_was_given(self, daemon: DaemonProcess) -> None:
        """cron.cancel takes a job or a run id, and its errors name the one given."""
        both = raw(daemon, "cron.cancel", {"job": "keep", "run_id": "x"})
        assert both["error"]["code"] == RPC_INVALID_PARAMS
        assert "'job'" in both["error"]["message"] and "'run_id'" in both["error"]["message"]
        unknown = raw(daemon, "cron.cancel", {"run_id": "no-such-run"})
        assert unknown["error"]["code"] == RPC_NOT_FOUND
        assert "no run with id 'no-such-run'" in unknown["error"]["message"]
        wrong = raw(daemon, "cron.cancel", {"run_id": 5})
        assert "'run_id' as a string" in wrong["error"]["message"]
        cli = daemon.cli("cron", "cancel", "no-such-thing")
        assert cli.code == EXIT_NOT_FOUND

    def test_a_name_clash_in_add_many_names_the_name(self, daemon: DaemonProcess) -> None:
        """No "UNIQUE constraint failed": the index and the name taken; nothing added."""
        before = jobs(daemon)
        spec = {"schedule": EVERY, "payload": EXEC}
        body = raw(
            daemon,
            "cron.add_many",
            {"jobs": [{"name": "fresh", **spec}, {"name": "keep", **spec}]},
        )
        message = body["error"]["message"]
        assert "jobs[1]" in message and "the name 'keep' is taken" in message
        assert "UNIQUE" not in message
        assert jobs(daemon) == before
