"""What a run is told: its context (where its files are) and the environment of its process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gatewayd.durations import format_time
from gatewayd.environ import run_environment
from gatewayd.model import ExecPayload, Job, Run, SystemEventPayload
from gatewayd.runners.base import RunContext
from gatewayd.store.base import Store


class RunEnvironment:
    """Builds each run's :class:`RunContext`.

    A run inherits ``inherited`` (``None``: the daemon's own environment, less its
    service's; see :mod:`gatewayd.environ`), then its job's ``env``, then the
    ``GATEWAYD_*`` variables that say which run it is and how to reach the daemon.
    """

    def __init__(
        self,
        *,
        store: Store,
        state_dir: Path,
        socket_path: Path,
        inherited: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._state_dir = state_dir
        self._socket_path = socket_path
        self._inherited = run_environment(os.environ) if inherited is None else dict(inherited)

    async def context(self, run: Run, job: Job) -> RunContext:
        """The context of a run about to start (it reads the job's previous run)."""
        if isinstance(job.payload, SystemEventPayload):
            # No process: no environment to tell.
            return RunContext(run=run, job=job, env={}, state_dir=self._state_dir)
        previous = await self._store.previous_started_run(job.id, run.run_id)
        env = dict(self._inherited)
        if isinstance(job.payload, ExecPayload):
            env.update(job.payload.env)
        env.update(
            {
                "GATEWAYD_RUN_ID": run.run_id,
                "GATEWAYD_JOB_ID": job.id,
                "GATEWAYD_JOB_NAME": job.name,
                "GATEWAYD_SESSION_KEY": run.session_key,
                "GATEWAYD_TRIGGER": run.trigger.value,
                "GATEWAYD_SCHEDULED_FOR": format_time(run.scheduled_for) or "",
                "GATEWAYD_ATTEMPT": str(run.attempt),
                "GATEWAYD_PREV_RUN_ID": previous.run_id if previous else "",
                "GATEWAYD_PREV_RUN_STATUS": previous.status.value if previous else "",
                "GATEWAYD_SOCKET": str(self._socket_path),
                "GATEWAYD_STATE_DIR": str(self._state_dir),
            }
        )
        return RunContext(run=run, job=job, env=env, state_dir=self._state_dir)
