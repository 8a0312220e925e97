"""What a runner is: it starts a run's work and hands back a handle to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gatewayd import runfiles
from gatewayd.model import Job, Leftovers, Run


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """Everything a runner needs to start one run."""

    run: Run
    job: Job
    env: Mapping[str, str]
    state_dir: Path

    @property
    def log_path(self) -> Path:
        return runfiles.log_path(self.state_dir, self.job.id, self.run.run_id)

    @property
    def exit_path(self) -> Path:
        return runfiles.exit_path(self.state_dir, self.job.id, self.run.run_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecResult:
    """How a run's work ended by itself: an exit code or a signal, and what it printed.

    ``ended_at`` is when the work ended, if that is known better than "now" (a
    re-adopted run that ended while no daemon watched). ``lost`` means the work
    ended without leaving its status anywhere. ``leftovers`` are the processes
    found in the run's group after its command ended (stopped or kept, by policy).
    """

    exit_code: int | None = None
    signal: int | None = None
    summary: str | None = None
    output_tail: str | None = None
    error: str | None = None
    ended_at: datetime | None = None
    lost: bool = False
    leftovers: Leftovers | None = None


class Execution(Protocol):
    """A run's work in progress.

    ``wait()`` returns when the work has ended, however it ended, and may be
    awaited again. ``stop(grace_s)`` asks the work to end (SIGTERM to a process
    group), then forces it after ``grace_s`` (SIGKILL), and returns when
    nothing of it is left.
    """

    @property
    def pid(self) -> int | None: ...

    @property
    def pid_start(self) -> int | None: ...

    async def wait(self) -> ExecResult: ...

    async def stop(self, grace_s: float) -> None: ...


class Runner(Protocol):
    """Starts the work of one payload kind.

    ``start`` returns once the work has begun, and raises
    :class:`gatewayd.errors.SpawnFailed` if it could not begin.
    """

    async def start(self, ctx: RunContext) -> Execution: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """An :class:`Execution` that ended as soon as it began."""

    result: ExecResult

    @property
    def pid(self) -> int | None:
        return None

    @property
    def pid_start(self) -> int | None:
        return None

    async def wait(self) -> ExecResult:
        return self.result

    async def stop(self, grace_s: float) -> None:
        return None
