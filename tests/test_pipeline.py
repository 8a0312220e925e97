"""The one run pipeline: ids before work, overlap policies, concurrency, stops, endings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from gatewayd.errors import NotFound, RunAlreadyEnded
from gatewayd.model import ErrorKind, RunStatus, Trigger
from gatewayd.runners.base import ExecResult
from gatewayd.store import SQLiteStore

from tests.harness import START, open_harness

# The daemon-level pipeline tests run over every store.
pytestmark = pytest.mark.usefixtures("each_store")


class TestManualRuns:
    """I6: a manual run's id is stored before `cron.run` returns."""

    async def test_run_id_is_real_when_returned(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="m", every="1h", command="true")
            result = await h.run_job(job_id, due=False)
            assert result["ok"] and result["ran"]
            stored = await h.store.get_run(result["run_id"])
            assert stored is not None
            assert stored.trigger is Trigger.MANUAL
            assert stored.status in (RunStatus.QUEUED, RunStatus.RUNNING)
            execution = await h.runner.wait_started(1)
            execution.finish()
            done = await h.gateway.runs.wait(result["run_id"], timeout_s=5)
            assert done.status is RunStatus.SUCCEEDED

    async def test_environment_names_the_previous_run(self, tmp_path: Path) -> None:
        """A run is told its own id and its previous run's id and status."""
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="m", every="1h", command="true")
            first = await h.run_job(job_id, due=False)
            (await h.runner.wait_started(1)).finish(ExecResult(exit_code=3))
            await h.gateway.runs.wait(first["run_id"], timeout_s=5)
            second = await h.run_job(job_id, due=False)
            env = (await h.runner.wait_started(2)).ctx.env
            assert env["GATEWAYD_RUN_ID"] == second["run_id"]
            assert env["GATEWAYD_JOB_ID"] == job_id
            assert env["GATEWAYD_JOB_NAME"] == "m"
            assert env["GATEWAYD_TRIGGER"] == "manual"
            assert env["GATEWAYD_PREV_RUN_ID"] == first["run_id"]
            assert env["GATEWAYD_PREV_RUN_STATUS"] == "failed"
            assert env["GATEWAYD_SESSION_KEY"] == f"cron:{job_id}:run:{second['run_id']}"

    async def test_due_runs_only_a_due_slot(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="d", every="1h", command="true")
            assert await h.run_job(job_id, due=True) == {
                "ok": True,
                "ran": False,
                "reason": "not-due",
            }
            assert await h.runs(job_id) == []

    async def test_a_recorded_run_is_driven_though_its_caller_is_cancelled(
        self, tmp_path: Path
    ) -> None:
        """I2: once its record is written, a run is launched even if the request is cancelled.

        On SQLite (where a write goes on once handed over), a cancelled caller
        must not leave a run recorded `queued` that nothing drives.
        """
        h_store = SQLiteStore(tmp_path / "g.db")
        async with open_harness(tmp_path, store=h_store) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="c", every="1h", command="true", overlap="allow")
            job = await h.store.get_job(job_id)
            assert job is not None
            with anyio.CancelScope() as scope:
                scope.cancel()
                await h.pipeline.submit_manual(job)
            [run] = await h.runs(job_id)
            ended = await h.gateway.runs.wait(run.run_id, timeout_s=5)
            assert ended.status is RunStatus.SUCCEEDED
        await h_store.close()


class TestOverlap:
    """What a new run does while an earlier run of the job is live."""

    async def test_skip_refuses_a_manual_run_and_names_the_live_one(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="s", every="1h", command="true")
            first = await h.run_job(job_id, due=False)
            await h.runner.wait_started(1)
            refused = await h.run_job(job_id, due=False)
            assert refused["ran"] is False
            assert refused["reason"] == "already-running"
            assert refused["run_id"] == first["run_id"]
            assert refused["running_since"] is not None

    async def test_skip_records_a_skipped_slot(self, tmp_path: Path) -> None:
        """A slot due while the job runs is recorded `skipped` with `overlap`."""
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="s", every="10s", command="true")
            await h.advance_to(START + timedelta(seconds=10))
            await h.runner.wait_started(1)
            await h.advance_to(START + timedelta(seconds=20))
            runs = await h.until(lambda: h.ended_runs(job_id, 1))
            assert runs[1].status is RunStatus.SKIPPED
            assert runs[1].error_kind is ErrorKind.OVERLAP
            assert runs[1].scheduled_for == START + timedelta(seconds=20)

    async def test_queue_buffers_one(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="q", every="1h", command="true", overlap="queue")
            await h.run_job(job_id, due=False)
            first = await h.runner.wait_started(1)
            queued = await h.run_job(job_id, due=False)
            refused = await h.run_job(job_id, due=False)
            assert queued["ran"] and not refused["ran"]
            stored = await h.store.get_run(queued["run_id"])
            assert stored is not None and stored.status is RunStatus.QUEUED
            first.finish()
            (await h.runner.wait_started(2)).finish()
            done = await h.gateway.runs.wait(queued["run_id"], timeout_s=5)
            assert done.status is RunStatus.SUCCEEDED

    async def test_replace_cancels_the_live_run(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="r", every="1h", command="true", overlap="replace")
            old = await h.run_job(job_id, due=False)
            await h.runner.wait_started(1)
            new = await h.run_job(job_id, due=False)
            assert new["ran"]
            replaced = await h.gateway.runs.wait(old["run_id"], timeout_s=5)
            assert replaced.status is RunStatus.CANCELLED
            assert replaced.stop_reason == "replaced"
            (await h.runner.wait_started(2)).finish()
            assert (await h.gateway.runs.wait(new["run_id"], timeout_s=5)).status is (
                RunStatus.SUCCEEDED
            )

    async def test_allow_runs_both(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="a", every="1h", command="true", overlap="allow")
            await h.run_job(job_id, due=False)
            await h.run_job(job_id, due=False)
            await h.runner.wait_started(2)

            async def both_running() -> bool:
                live = await h.store.live_runs(job_id)
                return [r.status for r in live] == [RunStatus.RUNNING, RunStatus.RUNNING]

            assert await h.until(both_running)

    async def test_allow_takes_many_at_once(self, tmp_path: Path) -> None:
        """I6: concurrent manual runs of an `allow` job are each recorded once and all run."""
        async with open_harness(tmp_path) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="a", every="1h", command="true", overlap="allow")
            ids: list[str] = []

            async def submit() -> None:
                ids.append((await h.run_job(job_id, due=False))["run_id"])

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(submit)
            ended = [await h.gateway.runs.wait(run_id, timeout_s=5) for run_id in ids]
            assert len(set(ids)) == 20
            assert {r.status for r in ended} == {RunStatus.SUCCEEDED}
            assert len(await h.runs(job_id)) == 20


class TestLimits:
    async def test_max_concurrent_runs_queues_the_rest(self, tmp_path: Path) -> None:
        """Beyond max_concurrent_runs, runs wait `queued` and start as slots free up."""
        async with open_harness(tmp_path, max_concurrent_runs=1) as h:
            a = await h.add(name="a", every="1h", command="true")
            b = await h.add(name="b", every="1h", command="true")
            await h.run_job(a, due=False)
            second = await h.run_job(b, due=False)
            first = await h.runner.wait_started(1)
            stored = await h.store.get_run(second["run_id"])
            assert stored is not None and stored.status is RunStatus.QUEUED
            assert len(h.runner.started) == 1
            first.finish()
            (await h.runner.wait_started(2)).finish()
            assert (await h.gateway.runs.wait(second["run_id"], timeout_s=5)).status is (
                RunStatus.SUCCEEDED
            )

    async def test_timeout_stops_the_work_and_records_timed_out(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path, kill_grace_s=2.0) as h:
            job_id = await h.add(name="t", every="1h", command="sleep 60", timeout="30s")
            result = await h.run_job(job_id, due=False)
            execution = await h.runner.wait_started(1)
            await h.clock.wait_for_sleeper(until=START + timedelta(seconds=30))
            h.clock.advance(30)
            run = await h.gateway.runs.wait(result["run_id"], timeout_s=5)
            assert run.status is RunStatus.TIMED_OUT
            assert (run.error_kind, run.stop_reason) == (ErrorKind.TIMEOUT, "timeout")
            assert run.error == "job execution timed out"
            assert execution.stopped_with_grace == 2.0


class TestCancel:
    async def test_cancel_a_running_run(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="c", every="1h", command="sleep 60")
            result = await h.run_job(job_id, due=False)
            execution = await h.runner.wait_started(1)
            [run] = await h.gateway.runs.cancel(result["run_id"])
            assert run.status is RunStatus.CANCELLED
            assert (run.error_kind, run.stop_reason) == (ErrorKind.CANCELLED, "cancelled")
            assert execution.stopped_with_grace is not None

    async def test_cancel_a_queued_run(self, tmp_path: Path) -> None:
        """A run waiting for a slot is cancelled without ever starting."""
        async with open_harness(tmp_path, max_concurrent_runs=1) as h:
            a = await h.add(name="a", every="1h", command="true")
            b = await h.add(name="b", every="1h", command="true")
            await h.run_job(a, due=False)
            await h.runner.wait_started(1)
            waiting = await h.run_job(b, due=False)
            [run] = await h.gateway.runs.cancel("b")
            assert run.run_id == waiting["run_id"]
            assert run.status is RunStatus.CANCELLED
            assert run.started_at is None

    async def test_cancel_an_ended_run_says_so(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="c", every="1h", command="true")
            result = await h.run_job(job_id, due=False)
            (await h.runner.wait_started(1)).finish()
            await h.gateway.runs.wait(result["run_id"], timeout_s=5)
            with pytest.raises(RunAlreadyEnded, match="already ended succeeded"):
                await h.gateway.runs.cancel(result["run_id"])
            with pytest.raises(NotFound, match="no queued or running run"):
                await h.gateway.runs.cancel(job_id)

    async def test_removing_a_job_cancels_its_runs_and_keeps_history(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="gone", every="1h", command="true")
            result = await h.run_job(job_id, due=False)
            await h.runner.wait_started(1)
            await h.gateway.jobs.remove("gone")
            run = await h.store.get_run(result["run_id"])
            assert run is not None and run.stop_reason == "job-removed"
            assert len(await h.gateway.runs.history(job_id, limit=10)) == 1
