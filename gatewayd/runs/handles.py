"""This instance's handles on the runs it drives: how to reach a run's task and stop it.

A handle is only a way to reach a task; whether a run is live is always read
from the store (I1).
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio

from gatewayd.model import Run, RunStatus, StopReason


class RunHandle:
    """One run's task: whether it started, why it is asked to stop, when it is done."""

    __slots__ = (
        "_stop_event",
        "done",
        "job_id",
        "lifecycle_ended",
        "run_id",
        "session_id",
        "started",
        "stop_reason",
        "stopping",
    )

    def __init__(self, run: Run) -> None:
        self.run_id = run.run_id
        self.job_id = run.job_id
        self.started = run.status is RunStatus.RUNNING
        self.session_id: str | None = None
        self.lifecycle_ended = False
        self.stop_reason: StopReason | None = None
        self.stopping = False
        self._stop_event: anyio.Event | None = None  # made only for those who wait for it
        self.done = anyio.Event()

    def request_stop(self, reason: StopReason) -> None:
        """Ask the run to stop; the first reason given is the one recorded."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def stop_requested(self) -> StopReason:
        """Return, with its reason, once a stop has been requested."""
        if not self.stopping:
            if self._stop_event is None:
                self._stop_event = anyio.Event()
            await self._stop_event.wait()
        return self.stop_reason or StopReason.CANCELLED


class Handles:
    """The handles of every run this instance drives, by run id."""

    def __init__(self) -> None:
        self._by_run: dict[str, RunHandle] = {}

    def add(self, run: Run) -> RunHandle:
        handle = self._by_run[run.run_id] = RunHandle(run)
        return handle

    def done(self, handle: RunHandle) -> None:
        """The handle's task has ended: wake who waits for it, and forget it."""
        handle.done.set()
        self._by_run.pop(handle.run_id, None)

    def get(self, run_id: str) -> RunHandle | None:
        return self._by_run.get(run_id)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._by_run

    def __len__(self) -> int:
        return len(self._by_run)

    def __iter__(self) -> Iterator[RunHandle]:
        return iter(list(self._by_run.values()))

    def request_stop(self, run_ids: Iterator[str] | list[str], reason: StopReason) -> None:
        """Ask each of these runs that this instance drives to stop."""
        for run_id in run_ids:
            handle = self._by_run.get(run_id)
            if handle is not None:
                handle.request_stop(reason)
