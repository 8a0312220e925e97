"""Helpers for testing gatewayd and code that uses it, shipped with the package.

* :class:`FakeRunner` is a runner whose executions end when the test says so.
* :class:`DaemonProcess` starts ``gatewayd serve`` as a real process on a
  temporary state directory and knows when it is ready from a real
  ``NOTIFY_SOCKET`` datagram, not from a sleep.
* :func:`wait_until` waits for a condition with a deadline.
* :class:`SmallDisk` is a real, small file system (a tmpfs the test mounts, as
  root) that a test can fill, free and make read-only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import orjson

from gatewayd.rpc.client import RpcClient
from gatewayd.runners.base import ExecResult, RunContext

T = TypeVar("T")


# --- in-process fakes ----------------------------------------------------------------


class FakeExecution:
    """An execution that ends when :meth:`finish` is called, or when stopped."""

    def __init__(self, ctx: RunContext, pid: int) -> None:
        self.ctx = ctx
        self._pid = pid
        self._ended = anyio.Event()
        self._result = ExecResult(exit_code=0)
        self.stopped_with_grace: float | None = None
        self.before_stop: Callable[[], Awaitable[None]] | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def pid_start(self) -> int | None:
        return None

    def finish(self, result: ExecResult | None = None) -> None:
        self._result = result or ExecResult(exit_code=0)
        self._ended.set()

    async def wait(self) -> ExecResult:
        await self._ended.wait()
        return self._result

    async def stop(self, grace_s: float) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        self.stopped_with_grace = grace_s
        self.finish(ExecResult(signal=signal.SIGTERM, error="killed by signal SIGTERM"))


@dataclass(kw_only=True)
class FakeRunner:
    """A runner for unit tests: records each start; ends runs on request.

    With ``auto_finish`` every execution ends as soon as it starts, successfully.
    """

    auto_finish: bool = False
    started: list[FakeExecution] = field(default_factory=list)
    _next_pid: int = 40000
    _changed: anyio.Event | None = None

    async def start(self, ctx: RunContext) -> FakeExecution:
        self._next_pid += 1
        execution = FakeExecution(ctx, self._next_pid)
        self.started.append(execution)
        if self.auto_finish:
            execution.finish()
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return execution

    async def wait_started(self, count: int) -> FakeExecution:
        """Wait until ``count`` executions have started; return the last of them."""
        while len(self.started) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.started[count - 1]


# --- conditions with deadlines -------------------------------------------------------


def observe(
    probe: Callable[[], T],
    *,
    every: float,
    until: Callable[[T], bool],
    timeout: float,
) -> list[T]:
    """Call ``probe`` every ``every`` seconds until ``until(result)``; every result seen."""
    deadline = time.monotonic() + timeout
    seen: list[T] = []
    while True:
        value = probe()
        seen.append(value)
        if until(value):
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"no final observation within {timeout}s; last: {value!r}")
        time.sleep(every)


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "a condition",
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s (last: {last!r})")
        time.sleep(interval)


# --- a real daemon -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


class DaemonProcess:
    """``gatewayd serve`` in a child process, on its own state directory.

    Start it with :meth:`start` (or as a context manager); it returns once the
    daemon has sent ``READY=1`` on a notify socket bound by this helper.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 20.0,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        stderr: int | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.config_text = config
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.args = list(args)
        self.prefix = list(prefix)
        self.stderr = stderr
        self.process: subprocess.Popen[bytes] | None = None
        # The helper's own files (the log, the notify socket, the config) live here.
        self.files_dir = files_dir or state_dir.parent
        self.log_path = self.files_dir / f"{state_dir.name}.daemon.log"
        self.notify_path = self.files_dir / f"{state_dir.name}.notify"
        self._notify: socket.socket | None = None
        self.messages: list[str] = []

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "gatewayd.sock"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAYD_", "NOTIFY_"))}
        env.update(self.extra_env)
        env["GATEWAYD_STATE_DIR"] = str(self.state_dir)
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to be ready."""
        argv = [*self.prefix, sys.executable, "-m", "gatewayd", "serve", *self.args]
        if self.config_text is not None:
            config = self.files_dir / f"{self.state_dir.name}.toml"
            config.write_text(self.config_text)
            argv += ["--config", str(config)]
        if self._notify is None:
            with contextlib.suppress(FileNotFoundError):
                self.notify_path.unlink()
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self.notify_path))
        env = self.env()
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=log if self.stderr is None else self.stderr
            )
        finally:
            log.close()
        return self.process

    def exit_code(self, *, timeout: float = 30.0) -> int:
        """Start the daemon and return its exit code, for a start that is expected to fail."""
        process = self.spawn()
        return process.wait(timeout=timeout)

    def start(self) -> DaemonProcess:
        """Start the daemon and return once this process has said READY=1."""
        process = self.spawn()
        self.wait_for_message("READY=1", timeout=self.ready_timeout, pid=process.pid)
        return self

    def wait_for_message(self, wanted: str, *, timeout: float, pid: int | None = None) -> str:
        """Wait for a notify datagram containing the line ``wanted`` (from ``pid`` if given)."""

        def matches(lines: list[str]) -> bool:
            return wanted in lines and (pid is None or f"MAINPID={pid}" in lines)

        return self.wait_for_notify(matches, timeout=timeout, what=wanted)

    def wait_for_notify(
        self, matches: Callable[[list[str]], bool], *, timeout: float, what: str = "a message"
    ) -> str:
        """Wait for a notify datagram whose lines ``matches``; messages seen before count."""
        for data in self.messages:
            if matches(data.splitlines()):
                return data
        assert self._notify is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} from gatewayd in {timeout}s; log:\n{self.log()}")
            self._notify.settimeout(min(remaining, 0.5))
            try:
                data = self._notify.recv(65536).decode()
            except TimeoutError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"gatewayd exited with {self.process.returncode} before {what}; "
                        f"log:\n{self.log()}"
                    ) from None
                continue
            self.messages.append(data)
            if matches(data.splitlines()):
                return data

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self) -> RpcClient:
        return RpcClient(self.socket_path)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self.client() as client:
            return client.call(method, params)

    def add_job(self, *args: str) -> dict[str, Any]:
        """``gatewayd cron add --json ARGS``, as a user would: the job it printed."""
        result = self.cli("cron", "add", "--json", *args)
        if result.code != 0:
            raise AssertionError(f"cron add {' '.join(args)} exited {result.code}: {result.stderr}")
        job: dict[str, Any] = result.json()
        return job

    def run_record(self, run_id: str) -> dict[str, Any]:
        """The run as ``runs.get`` answers it."""
        run: dict[str, Any] = self.call("runs.get", {"run_id": run_id})
        return run

    def cli(self, *args: str, timeout: float = 60.0) -> CliResult:
        """Run ``gatewayd ARGS`` against this daemon, as a user would."""
        return run_cli(args, env=self.env(), timeout=timeout)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, *, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def process_group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in a process group."""
    from gatewayd.runners.processes import group_members

    return group_members(pgid)


def run_cli(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60.0) -> CliResult:
    """Run ``gatewayd ARGS`` with ``env``, outside any daemon helper."""
    done = subprocess.run(
        [sys.executable, "-m", "gatewayd", *args],
        env=dict(env),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(
        code=done.returncode,
        stdout=done.stdout.decode(errors="replace"),
        stderr=done.stderr.decode(errors="replace"),
    )


# --- a real small file system -----------------------------------------------------------


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path`` for the test's life (needs root, as CI has).

    :meth:`fill` writes a file until no space is left; :meth:`free` removes it.
    :meth:`read_only` remounts it read-only (or back).
    """

    def __init__(self, path: Path, *, size: str = "16m") -> None:
        self.path = path
        self.size = size
        self.filler = path / ".filler"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                "these tests mount a small tmpfs, which needs root (CI runs as root): "
                + done.stderr.decode(errors="replace")
            )
        return self

    def fill(self, *, leave: int = 0) -> None:
        """Take every byte of free space (but ``leave``), with one file."""
        with self.filler.open("ab") as handle:
            chunk = b"\0" * 65536
            try:
                while True:
                    free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
                    if free <= leave:
                        return
                    handle.write(chunk[: max(1, min(len(chunk), free - leave))])
                    handle.flush()
            except OSError:
                return

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def read_only(self, value: bool = True) -> None:
        option = "remount,ro" if value else "remount,rw"
        subprocess.run(["mount", "-o", option, str(self.path)], check=True)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
