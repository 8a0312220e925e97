"""Connections are bounded: a limit, an idle timeout, and paged lists (I11).

Real sockets against a real daemon: idle clients past the limit, and a job
that goes on running while they hold every connection the daemon allows.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from gatewayd.durations import parse_time
from gatewayd.errors import RPC_BUSY
from gatewayd.testing import DaemonProcess, wait_until

CONFIG = """
[gateway]
max_connections = 8
idle_timeout = "2s"
"""


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the daemon has closed this connection (it reads as end of file)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class TestConnectionLimit:
    def test_clients_over_the_limit_are_told_and_runs_go_on(self, tmp_path: Path) -> None:
        """Past max_connections, a client gets an error naming the limit and is closed;
        idle clients are closed after idle_timeout; a job fires all the while."""
        with DaemonProcess(tmp_path / "state", config=CONFIG) as d, ExitStack() as stack:
            tick = d.cli("cron", "add", "--name", "tick", "--every", "1s", "--command", "true")
            assert tick.code == 0, tick.stderr
            held = [stack.enter_context(connect(d.socket_path)) for _ in range(8)]
            saturated_at = time.time()
            extra = stack.enter_context(connect(d.socket_path))
            with extra.makefile("rb") as reader:
                refusal = json.loads(reader.readline())
                assert reader.readline() == b"", "the refused connection is closed"
            assert refusal["error"]["code"] == RPC_BUSY
            assert "limit of 8 connections" in refusal["error"]["message"]
            wait_until(
                lambda: all(closed_by_peer(s) for s in held), timeout=6, what="idle clients closed"
            )
            released_at = time.time()
            runs = d.call("cron.runs", {"job": "tick", "limit": 100})
            during = [
                r
                for r in runs
                if r["status"] == "succeeded"
                and saturated_at <= parse_time(r["queued_at"]).timestamp() <= released_at
            ]
            assert during, "runs went on while every connection was taken"

    def test_many_idle_clients_do_not_exhaust_file_descriptors(self, tmp_path: Path) -> None:
        """1,000 idle connections: the daemon keeps at most its limit open (its descriptors
        stay bounded) and its runs still start."""
        with DaemonProcess(tmp_path / "state") as d, ExitStack() as stack:
            baseline = open_fds(d.pid)
            clients = []
            for _ in range(1000):
                try:
                    clients.append(stack.enter_context(connect(d.socket_path)))
                except OSError:
                    continue  # the backlog was full for a moment: the daemon refuses fast
            wait_until(
                lambda: sum(not closed_by_peer(s) for s in clients) <= 256,
                timeout=30,
                what="connections over the limit to be closed",
            )
            assert open_fds(d.pid) <= baseline + 256 + 16
            for sock in clients:
                sock.close()
            job = d.cli("cron", "add", "--name", "ok", "--every", "1h", "--command", "true")
            assert job.code == 0, job.stderr
            done = d.cli("cron", "run", "ok", "--wait", "--json")
            assert done.code == 0, done.stderr


class TestPaging:
    def test_cron_list_pages_through_every_job(self, tmp_path: Path) -> None:
        """A page is at most 200 jobs (100 by default); `cron list` follows the pages to
        show all 1,200."""
        with DaemonProcess(tmp_path / "state") as d:
            spec: dict[str, Any] = {
                "schedule": {"kind": "every", "every_s": 3600},
                "payload": {"kind": "exec", "command": "true"},
            }
            d.call("cron.add_many", {"jobs": [{"name": f"j{n:04}", **spec} for n in range(1200)]})
            assert len(d.call("cron.list")) == 100
            pages = [d.call("cron.list", {"limit": 200})]
            while len(pages[-1]) == 200:
                pages.append(d.call("cron.list", {"limit": 200, "after": pages[-1][-1]["name"]}))
            assert [j["name"] for page in pages for j in page] == [f"j{n:04}" for n in range(1200)]
            listed = d.cli("cron", "list", "--json")
            assert len(json.loads(listed.stdout)) == 1200
            too_many = d.cli("cron", "runs", "--id", "j0000", "--limit", "5000")
            assert too_many.code == 2 and "limit: must be from 1 to 200" in too_many.stderr
