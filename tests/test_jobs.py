"""Changing jobs: edits, enable and disable, one-shot deletion, and config reconciliation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from gatewayd import views
from gatewayd.errors import InvalidInput, NameTaken
from gatewayd.flatspec import spec_from_flat
from gatewayd.model import ExecPayload, JobSource, RunStatus, ScheduleKind

from tests.harness import START, open_harness

# The daemon-level pipeline tests run over every store.
pytestmark = pytest.mark.usefixtures("each_store")


class TestEdit:
    """`cron edit` changes what it names and keeps the rest."""

    async def test_patch_keeps_other_fields(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            job_id = await h.add(name="e", every="1h", command="true", timeout="5m")
            job = await h.gateway.jobs.update("e", spec_from_flat({"timeout": "10m"}))
            assert job.timeout_s == 600
            assert job.schedule.every_s == 3600
            assert job.next_slot == START + timedelta(hours=1)
            assert job.id == job_id

    async def test_new_schedule_gets_a_new_next_slot(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.add(name="e", every="1h", command="true")
            h.clock.advance(30)
            job = await h.gateway.jobs.update("e", spec_from_flat({"cron": "*/5 * * * *"}))
            assert job.schedule.kind is ScheduleKind.CRON
            assert job.next_slot == START + timedelta(minutes=5)
            assert h.scheduler.next_wake_at == START + timedelta(minutes=5)

    async def test_shell_replaces_command(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.add(name="e", every="1h", command="true")
            job = await h.gateway.jobs.update("e", spec_from_flat({"shell": "echo hi | wc"}))
            assert job.payload == ExecPayload(shell="echo hi | wc")

    async def test_bad_patch_changes_nothing(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.add(name="e", every="1h", command="true")
            await h.add(name="other", every="1h", command="true")
            before = await h.gateway.reads.job("e")
            with pytest.raises(InvalidInput, match="unknown time zone"):
                await h.gateway.jobs.update("e", spec_from_flat({"tz": "Nowhere/Land"}))
            with pytest.raises(NameTaken):
                await h.gateway.jobs.update("e", {"name": "other"})
            with pytest.raises(InvalidInput, match="unknown field 'colour'"):
                await h.gateway.jobs.update("e", {"colour": "red"})
            assert await h.gateway.reads.job("e") == before

    async def test_disable_and_enable(self, tmp_path: Path) -> None:
        """A disabled job has no next run; enabling it plans from now, without catch-up."""
        async with open_harness(tmp_path) as h:
            await h.add(name="e", every="10m", command="true")
            off = await h.gateway.jobs.set_enabled("e", False)
            assert views.job_to_json(await h.gateway.reads.job_state(off))["next_run_at"] is None
            assert h.scheduler.next_wake_at is None
            h.clock.advance(3600 + 60)
            on = await h.gateway.jobs.set_enabled("e", True)
            assert on.next_slot == START + timedelta(minutes=70)
            assert h.scheduler.next_wake_at == on.next_slot


class TestBatch:
    async def test_add_many_checks_every_spec_first(self, tmp_path: Path) -> None:
        """A batch with one bad spec is refused whole, naming the spec's index."""
        async with open_harness(tmp_path) as h:
            good = [
                spec_from_flat({"name": f"j{n}", "every": "1h", "command": "true"})
                for n in range(3)
            ]
            bad = [*good, spec_from_flat({"name": "x", "cron": "99 * * * *", "command": "true"})]
            with pytest.raises(InvalidInput, match=r"jobs\[3\]: cron: invalid expression"):
                await h.gateway.jobs.add_many(bad)
            assert await h.gateway.reads.list_jobs(include_disabled=True) == []
            added = await h.gateway.jobs.add_many(good)
            assert [j.name for j in added] == ["j0", "j1", "j2"]
            assert h.scheduler.next_wake_at == START + timedelta(hours=1)


class TestOneShot:
    async def test_delete_after_run_keeps_the_run(self, tmp_path: Path) -> None:
        """A one-shot job is deleted after its run; the run stays in history."""
        async with open_harness(tmp_path) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="once", at="+5m", command="true", delete_after_run=True)
            await h.advance_to(START + timedelta(minutes=5))
            runs = await h.until(lambda: h.ended_runs(job_id, 1, RunStatus.SUCCEEDED))
            await h.until(lambda: h.job_gone(job_id))
            history = await h.gateway.runs.history(job_id, limit=5)
            assert [r.run_id for r in history] == [runs[0].run_id]

    async def test_delete_after_run_needs_an_at_schedule(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            with pytest.raises(InvalidInput, match="only to one-shot at"):
                await h.add(name="x", every="1h", command="true", delete_after_run=True)


class TestReconcile:
    """Declared jobs follow the config by name; API jobs are never touched."""

    async def test_add_change_remove(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            api_id = await h.add(name="mine", every="1h", command="true")
            declared = [
                spec_from_flat({"name": "a", "every": "10m", "command": "true"}),
                spec_from_flat({"name": "b", "cron": "0 * * * *", "command": "true"}),
            ]
            assert await h.gateway.jobs.reconcile(declared) == {
                "added": ["a", "b"],
                "changed": [],
                "removed": [],
            }
            a = await h.gateway.reads.job("a")
            assert a.source is JobSource.CONFIG
            h.clock.advance(120)
            assert await h.gateway.jobs.reconcile(declared) == {
                "added": [],
                "changed": [],
                "removed": [],
            }
            assert await h.gateway.reads.job("a") == a, "an unchanged declaration keeps its anchor"
            changed = [spec_from_flat({"name": "a", "every": "10m", "command": "false"})]
            assert await h.gateway.jobs.reconcile(changed) == {
                "added": [],
                "changed": ["a"],
                "removed": ["b"],
            }
            a2 = await h.gateway.reads.job("a")
            assert a2.schedule == a.schedule and a2.next_slot == a.next_slot
            assert (await h.gateway.reads.job(api_id)).source is JobSource.API

    async def test_config_jobs_are_edited_in_the_file(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.gateway.jobs.reconcile(
                [spec_from_flat({"name": "a", "every": "1m", "shell": "x"})]
            )
            with pytest.raises(InvalidInput, match="declared in the config file"):
                await h.gateway.jobs.update("a", {"timeout_s": 5})
            with pytest.raises(InvalidInput, match="declared in the config file"):
                await h.gateway.jobs.remove("a")

    async def test_a_declared_name_taken_by_an_api_job_is_refused(self, tmp_path: Path) -> None:
        async with open_harness(tmp_path) as h:
            await h.add(name="a", every="1h", command="true")
            with pytest.raises(InvalidInput, match="added through the API"):
                await h.gateway.jobs.reconcile(
                    [spec_from_flat({"name": "a", "every": "1m", "command": "x"})]
                )


class TestTimesAsStored:
    async def test_a_new_jobs_times_are_the_ones_its_store_keeps(self, tmp_path: Path) -> None:
        """An every schedule's anchor and a relative one-shot time are cut to the
        millisecond the job's JSON keeps, so the job read back from the store walks the
        same slots as the one just made (a restart moves no slot)."""
        start = START + timedelta(microseconds=123_456)
        async with open_harness(tmp_path, start=start) as h:
            every = await h.gateway.jobs.add(
                spec_from_flat({"name": "e", "every": "1m", "command": "x"})
            )
            once = await h.gateway.jobs.add(
                spec_from_flat({"name": "o", "at": "+20m", "command": "x"})
            )
            for made in (every, once):
                stored = await h.store.get_job(made.id)
                assert stored is not None
                assert stored.schedule == made.schedule
                assert stored.next_slot == made.next_slot
        assert every.schedule.anchor == START + timedelta(microseconds=123_000)
