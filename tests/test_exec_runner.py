"""The exec runner with real processes and files, under either output pump.

In process: the runner starts real waiters and commands; only the run's record
is made here instead of by a daemon. Each pump (perl's, and the ``head`` one used
where there is no perl) caps the log with its marker, leaves the tail complete,
and lets the group be settled.
"""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from gatewayd.model import (
    ExecPayload,
    Job,
    LeftoverPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleKind,
    Trigger,
)
from gatewayd.runners.base import RunContext
from gatewayd.runners.exec import ExecRunner, WaiterSettings
from gatewayd.runners.spawn import HAS_PERL
from gatewayd.testing import process_group_members

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PUMPS = ["perl", "head"] if HAS_PERL else ["head"]


def context(
    tmp_path: Path, shell: str, *, leftovers: LeftoverPolicy = LeftoverPolicy.KILL
) -> RunContext:
    job = Job(
        id="job1",
        name="job",
        schedule=Schedule(kind=ScheduleKind.EVERY, every_s=60, anchor=T0),
        payload=ExecPayload(shell=shell),
        leftovers=leftovers,
        created_at=T0,
        updated_at=T0,
    )
    run = Run(
        run_id="run1",
        job_id="job1",
        job_name="job",
        trigger=Trigger.MANUAL,
        status=RunStatus.QUEUED,
        queued_at=T0,
        session_key="k",
    )
    return RunContext(run=run, job=job, env={"PATH": os.environ["PATH"]}, state_dir=tmp_path)


@pytest.mark.parametrize("pump", PUMPS)
class TestPumps:
    async def test_the_cap_its_marker_and_the_status(self, tmp_path: Path, pump: str) -> None:
        """Past max_output the output is dropped with a marker; the command's status is
        its own."""
        runner = ExecRunner(settings=WaiterSettings(max_output=1000, perl_pump=pump == "perl"))
        ctx = context(tmp_path, "head -c 5000 /dev/zero | tr '\\0' a; echo; exit 4")
        result = await (await runner.start(ctx)).wait()
        assert result.exit_code == 4
        log = ctx.log_path.read_bytes()
        assert log.startswith(b"a" * 1000)
        assert b"max_output of 1000 bytes reached" in log
        assert b"4001 more bytes" in log
        assert result.output_tail is not None and "4001 more bytes" in result.output_tail

    async def test_a_short_output_is_whole_in_the_tail(self, tmp_path: Path, pump: str) -> None:
        runner = ExecRunner(settings=WaiterSettings(perl_pump=pump == "perl"))
        ctx = context(tmp_path, "echo one; echo two >&2")
        result = await (await runner.start(ctx)).wait()
        assert (result.exit_code, result.output_tail, result.leftovers) == (0, "one\ntwo\n", None)

    async def test_leftovers_are_found_stopped_or_kept(self, tmp_path: Path, pump: str) -> None:
        """A process left in the group is named; `kill` stops it, `keep` keeps it."""
        for policy in (LeftoverPolicy.KILL, LeftoverPolicy.KEEP):
            settings = WaiterSettings(kill_grace_s=1, perl_pump=pump == "perl")
            ctx = context(tmp_path / policy.value, "sleep 30 & echo started", leftovers=policy)
            execution = await ExecRunner(settings=settings).start(ctx)
            with anyio.fail_after(10):
                result = await execution.wait()
            try:
                assert result.leftovers is not None
                assert result.leftovers.policy is policy
                assert [p.command for p in result.leftovers.processes] == ["sleep 30"]
                left = process_group_members(execution.pid)
                assert (left == []) is (policy is LeftoverPolicy.KILL)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(execution.pid, signal.SIGKILL)
