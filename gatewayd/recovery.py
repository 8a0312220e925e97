"""Start-up settlement: runs left live by an instance that is gone (I4).

Runs whose owner instance is dead are settled before the socket serves, so that
no job is ever refused as "already running" because of a run that is not.
"""

from __future__ import annotations

import signal

import anyio.to_thread
import structlog

from gatewayd.clock import Clock
from gatewayd.errors import RunAlreadyEnded
from gatewayd.model import ErrorKind, Run, RunOutcome, RunStatus
from gatewayd.runners.procgroup import group_members, signal_group
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.recovery")


def _stop_orphan(run: Run) -> bool:
    """Stop what is left of the run's process group; ``True`` if something was left."""
    if run.pid is None or not group_members(run.pid):
        return False
    signal_group(run.pid, signal.SIGKILL)
    return True


async def settle_orphans(store: Store, clock: Clock, instance_id: str) -> list[Run]:
    """Record ``interrupted`` every live run that ``instance_id`` does not own.

    The caller holds the state directory's lock, so no other instance is alive.
    What is left of such a run's process group is stopped: nothing would record
    its ending otherwise.
    """
    settled = []
    for run in await store.live_runs():
        if run.owner == instance_id:
            continue
        stopped = await anyio.to_thread.run_sync(_stop_orphan, run)
        reason = f"gatewayd instance {run.owner} stopped before the run ended"
        if stopped:
            reason += "; its leftover processes were killed"
        try:
            settled.append(
                await store.finish_run(
                    run.run_id,
                    RunOutcome(
                        status=RunStatus.INTERRUPTED,
                        ended_at=clock.now(),
                        error=reason,
                        error_kind=ErrorKind.INTERRUPTED,
                        stop_reason="owner-gone",
                    ),
                )
            )
        except RunAlreadyEnded:
            continue
        log.warning("run interrupted", run_id=run.run_id, job_id=run.job_id, reason=reason)
    return settled
