"""I5 in process: every ending publishes the session's end first, then stops, then finishes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gatewayd.model import Run, RunOutcome, RunStatus, SessionStatus
from gatewayd.runners.base import ExecResult
from gatewayd.runners.system_event import SystemEventRunner
from gatewayd.sessions import inbox_path, tail_jsonl
from gatewayd.store import MemoryStore
from gatewayd.workers import open_workers

from tests.harness import START, Harness, open_harness

# The daemon-level pipeline tests run over every store.
pytestmark = pytest.mark.usefixtures("each_store")


async def story(h: Harness, run_id: str) -> list[tuple[str, str]]:
    """The run's events, in seq order, as (stream, phase)."""
    events = await h.store.events_after(0, limit=1000)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    return [(e["stream"], e["phase"]) for e in events if e.get("run_id") == run_id]


class TestOrder:
    async def test_timeout(self, tmp_path: Path) -> None:
        """On timeout: lifecycle error, terminal session, then the stop, then `finished`."""
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="t", every="1h", command="sleep 30", timeout="1s")
            run_id = (await h.run_job(job_id, due=False))["run_id"]
            execution = await h.runner.wait_started(1)
            seen_at_stop: dict[str, Any] = {}

            async def before_stop() -> None:
                run = await h.store.get_run(run_id)
                assert run is not None
                session = await h.store.get_session(run.session_key)
                seen_at_stop["session"] = session
                seen_at_stop["run"] = run.status
                seen_at_stop["events"] = await story(h, run_id)

            execution.before_stop = before_stop
            await h.clock.wait_for_sleeper(until=START + timedelta(seconds=1))
            h.clock.advance(1)
            run = await h.gateway.runs.wait(run_id, timeout_s=5)
            assert run.status is RunStatus.TIMED_OUT
            session = seen_at_stop["session"]
            assert session.status is SessionStatus.TIMED_OUT
            assert (session.stop_reason, session.error) == ("timeout", "job execution timed out")
            assert seen_at_stop["run"] is RunStatus.RUNNING, "callers do not see it yet"
            assert seen_at_stop["events"][-1] == ("lifecycle", "error")
            assert await story(h, run_id) == [
                ("run", "queued"),
                ("run", "started"),
                ("lifecycle", "start"),
                ("lifecycle", "error"),
                ("run", "finished"),
            ]
            [error] = [
                e
                for e in await h.store.events_after(0, limit=100)
                if e.get("run_id") == run_id and e["phase"] == "error"
            ]
            assert error["error_kind"] == "timeout" and error["stop_reason"] == "timeout"
            assert error["session_key"] == run.session_key

    async def test_success_and_failure(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="s", every="1h", command="true", overlap="allow")
            ok = (await h.run_job(job_id, due=False))["run_id"]
            (await h.runner.wait_started(1)).finish()
            bad = (await h.run_job(job_id, due=False))["run_id"]
            (await h.runner.wait_started(2)).finish(ExecResult(exit_code=2, error="exited"))
            for run_id in (ok, bad):
                await h.gateway.runs.wait(run_id, timeout_s=5)
            assert (await story(h, ok))[-2:] == [("lifecycle", "end"), ("run", "finished")]
            assert (await story(h, bad))[-2:] == [("lifecycle", "error"), ("run", "finished")]
            ok_session = await h.store.get_session(f"cron:{job_id}:run:{ok}")
            bad_session = await h.store.get_session(f"cron:{job_id}:run:{bad}")
            assert ok_session is not None and ok_session.status is SessionStatus.DONE
            assert bad_session is not None and bad_session.status is SessionStatus.FAILED

    async def test_main_session_is_shared(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="m", every="1h", system_event="ping", session="main")
            first = (await h.run_job(job_id, due=False))["run_id"]
            (await h.runner.wait_started(1)).finish()
            await h.gateway.runs.wait(first, timeout_s=5)
            one = await h.store.get_session("main")
            second = (await h.run_job(job_id, due=False))["run_id"]
            (await h.runner.wait_started(2)).finish()
            await h.gateway.runs.wait(second, timeout_s=5)
            two = await h.store.get_session("main")
            assert one is not None and two is not None
            assert one.session_id == two.session_id
            assert (one.run_id, two.run_id) == (first, second)


class WritesSeen(MemoryStore):
    """A memory store that also notes each run transition it is asked to write."""

    def __init__(self) -> None:
        super().__init__()
        self.transitions: list[tuple[str, str]] = []

    async def start_run(self, run_id: str, **kwargs: Any) -> Run:
        ended = kwargs.get("outcome") is not None
        self.transitions.append(("start and end" if ended else "start", run_id))
        return await super().start_run(run_id, **kwargs)

    async def finish_run(self, run_id: str, outcome: RunOutcome, **kwargs: Any) -> Run:
        self.transitions.append(("end", run_id))
        return await super().finish_run(run_id, outcome, **kwargs)


class TestWorkOverAtItsStart:
    async def test_start_and_ending_are_one_write(self, tmp_path: Path) -> None:
        """I1, I2: a system event is over before its start is recorded; both are one write.

        So no one ever sees it running, and its events are consecutive, in order.
        """
        store = WritesSeen()
        async with (
            open_workers("inbox", size=1) as inbox,
            open_harness(
                tmp_path, system_events=SystemEventRunner(offload=inbox.call), store=store
            ) as h,
        ):
            job_id = await h.add(name="e", every="1h", system_event="ping", session="main")
            run_id = (await h.run_job(job_id, due=False))["run_id"]
            run = await h.gateway.runs.wait(run_id, timeout_s=5)
            assert run.status is RunStatus.SUCCEEDED
            assert store.transitions == [("start and end", run_id)]
            events = [e for e in await store.events_after(0, limit=10) if e.get("run_id") == run_id]
            assert [(e["stream"], e["phase"]) for e in events] == [
                ("run", "queued"),
                ("run", "started"),
                ("lifecycle", "start"),
                ("lifecycle", "end"),
                ("run", "finished"),
            ]
            assert [e["seq"] for e in events[1:]] == list(
                range(events[1]["seq"], events[1]["seq"] + 4)
            )
            assert run.started_at is not None and run.duration_ms is not None
            session = await h.store.get_session("main")
            assert session is not None and session.status is SessionStatus.DONE
            assert session.runtime_ms is not None
            assert [e["run_id"] for e in tail_jsonl(inbox_path(tmp_path))] == [run_id]
