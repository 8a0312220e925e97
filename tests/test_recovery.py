"""Settlement, sweeping and retries, in process with a FakeClock and a memory store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from gatewayd import runfiles
from gatewayd.errors import NotFound
from gatewayd.model import ErrorKind, Run, RunStatus, Trigger
from gatewayd.recovery import Recovery
from gatewayd.runners.base import ExecResult
from gatewayd.runners.exec import ExecRunner
from gatewayd.settings import Retention

from tests.harness import START, Harness, open_harness


def recovery(h: Harness, tmp_path: Path) -> Recovery:
    return Recovery(
        store=h.store,
        clock=h.clock,
        pipeline=h.pipeline,
        exec_runner=ExecRunner(),
        instance_id="test-instance",
        state_dir=tmp_path,
        host_id="test-host",
    )


def orphan(run_id: str, job_id: str, **kw: object) -> Run:
    fields: dict[str, object] = {
        "run_id": run_id,
        "job_id": job_id,
        "job_name": "j",
        "trigger": Trigger.MANUAL,
        "status": RunStatus.QUEUED,
        "queued_at": START,
        "session_key": "s",
        "owner": "dead-instance",
    }
    fields.update(kw)
    return Run(**fields)  # type: ignore[arg-type]


class TestSettlement:
    """I4: runs of a dead instance are settled; runs this instance watches are not."""

    async def test_orphans_are_settled_and_ours_are_left_alone(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="j", every="1h", command="true", retry=2)
            mine = await h.run_job(job_id, due=False)
            await h.runner.wait_started(1)
            await h.store.record_runs(
                [
                    orphan("queued-orphan", job_id),
                    orphan(
                        "retry-orphan",
                        job_id,
                        trigger=Trigger.RETRY,
                        attempt=2,
                        scheduled_for=START + timedelta(seconds=30),
                    ),
                ]
            )
            await h.store.record_runs([orphan("running-orphan", job_id)])
            await h.store.start_run(
                "running-orphan", started_at=START, owner="dead-instance", pid=None
            )
            done = await recovery(h, tmp_path).settle()
            assert sorted(done.interrupted) == ["queued-orphan", "running-orphan"]
            assert done.requeued == ["retry-orphan"]
            assert done.adopted == []
            lost = await h.store.get_run("running-orphan")
            assert lost is not None and lost.status is RunStatus.INTERRUPTED
            assert lost.error_kind is ErrorKind.INTERRUPTED
            assert lost.error is not None and "dead-instance" in lost.error
            retry = await h.store.get_run("retry-orphan")
            assert retry is not None and retry.owner == "test-instance"
            assert retry.status is RunStatus.QUEUED
            ours = await h.store.get_run(mine["run_id"])
            assert ours is not None and ours.status is RunStatus.RUNNING
            assert not await recovery(h, tmp_path).settle(), "a second pass finds nothing"

    async def test_pruning_keeps_live_runs_and_deletes_files(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="j", every="1h", command="true", overlap="allow")
            ids = []
            for _ in range(4):
                ids.append((await h.run_job(job_id, due=False))["run_id"])
                await h.gateway.runs.wait(ids[-1], timeout_s=5)
            for run_id in ids:
                runfiles.log_path(tmp_path, job_id, run_id).parent.mkdir(
                    parents=True, exist_ok=True
                )
                runfiles.log_path(tmp_path, job_id, run_id).write_text("out")
            h.runner.auto_finish = False
            live = (await h.run_job(job_id, due=False))["run_id"]
            await h.runner.wait_started(5)
            pruned = await recovery(h, tmp_path).prune(Retention(keep_per_job=2, max_age_s=1e9))
            assert pruned == 3
            left = [r.run_id for r in await h.store.list_runs(job_id, limit=10)]
            assert left == [live, ids[-1]]
            assert not runfiles.log_path(tmp_path, job_id, ids[0]).exists()
            assert await h.store.get_session(f"cron:{job_id}:run:{ids[0]}") is None
            assert runfiles.log_path(tmp_path, job_id, ids[-1]).exists()
            with pytest.raises(NotFound):  # its ending is no longer answered from memory
                await h.gateway.runs.wait(ids[0], timeout_s=1)
            assert (await h.gateway.runs.wait(ids[-1], timeout_s=1)).run_id == ids[-1]


class TestRetry:
    async def test_failed_runs_retry_with_backoff_until_attempts_run_out(
        self, tmp_path: Path
    ) -> None:
        """Retries carry trigger `retry` and their attempt; backoff doubles; then they stop."""
        async with open_harness(tmp_path) as h:
            job_id = await h.add(
                name="r", every="1h", command="false", retry=2, retry_backoff="10s"
            )
            await h.run_job(job_id, due=False)
            (await h.runner.wait_started(1)).finish(ExecResult(exit_code=1))
            retry = (await h.until(lambda: h.at_least(job_id, 2)))[-1]
            assert (retry.trigger, retry.attempt, retry.status) == (
                Trigger.RETRY,
                2,
                RunStatus.QUEUED,
            )
            assert retry.scheduled_for == START + timedelta(seconds=10)
            await h.clock.wait_for_sleeper(until=START + timedelta(seconds=10))
            h.clock.advance(10)
            (await h.runner.wait_started(2)).finish(ExecResult(exit_code=1))
            third = (await h.until(lambda: h.at_least(job_id, 3)))[-1]
            assert third.attempt == 3
            assert third.scheduled_for == START + timedelta(seconds=30)
            await h.clock.wait_for_sleeper(until=START + timedelta(seconds=30))
            h.clock.advance(20)
            (await h.runner.wait_started(3)).finish(ExecResult(exit_code=1))
            runs = await h.until(lambda: h.ended_runs(job_id, 3))
            assert [r.attempt for r in runs] == [1, 2, 3]
            assert all(r.status is RunStatus.FAILED for r in runs)

    async def test_success_and_cancel_do_not_retry(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="r", every="1h", command="x", retry=3, overlap="allow")
            ok = await h.run_job(job_id, due=False)
            (await h.runner.wait_started(1)).finish()
            await h.gateway.runs.wait(ok["run_id"], timeout_s=5)
            stopped = await h.run_job(job_id, due=False)
            await h.runner.wait_started(2)
            await h.gateway.runs.cancel(stopped["run_id"])
            assert len(await h.runs(job_id)) == 2
