"""What a daemon builds from its config: its runs' settings and its runners.

The daemon's own composition (:mod:`gatewayd.daemon`) reads these; the core
itself is built in one place, :func:`gatewayd.assembly.open_core`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gatewayd.clock import Clock
from gatewayd.config import Config
from gatewayd.environ import run_environment
from gatewayd.model import PayloadKind
from gatewayd.planning import CatchupLimits
from gatewayd.runners.agent_turn import AgentTurnRunner
from gatewayd.runners.base import Runner
from gatewayd.runners.exec import ExecRunner, WaiterSettings
from gatewayd.runners.system_event import SystemEventRunner
from gatewayd.runs import PipelineSettings
from gatewayd.workers import open_workers

# Threads for runs' blocking work: their files, and spawning their waiters.
IO_THREADS = 2


def pipeline_settings(
    config: Config,
    *,
    instance_id: str,
    state_dir: Path,
    socket_path: Path,
    env: Mapping[str, str],
) -> PipelineSettings:
    """The run pipeline's settings, as ``config`` gives them."""
    gw, sched = config.gateway, config.scheduler
    return PipelineSettings(
        instance_id=instance_id,
        state_dir=state_dir,
        socket_path=socket_path,
        max_concurrent_runs=gw.max_concurrent_runs,
        default_timeout_s=gw.default_timeout_s,
        kill_grace_s=gw.kill_grace_s,
        catchup_window_s=sched.catchup_window_s,
        catchup=CatchupLimits(grace_s=sched.misfire_grace_s, max_runs=sched.catchup_max_runs),
        agent_timeouts=tuple(
            (a.name, a.timeout_s) for a in config.agents if a.timeout_s is not None
        ),
        inherited_env=run_environment(env, gw.pass_env),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Runners:
    """The runner of each payload kind; exec and agent turns also adopt after a restart."""

    exec: ExecRunner
    agent: AgentTurnRunner
    by_kind: Mapping[PayloadKind, Runner]


async def open_runners(
    stack: contextlib.AsyncExitStack, config: Config, clock: Clock, *, umask: int, nofile: int
) -> Runners:
    """The runners, with the threads they hand blocking work to (ended by ``stack``)."""
    gw = config.gateway
    waiters = WaiterSettings(
        kill_grace_s=gw.kill_grace_s, max_output=gw.max_output, umask=umask, nofile=nofile
    )
    io = await stack.enter_async_context(open_workers("gatewayd-io", size=IO_THREADS))
    inbox = await stack.enter_async_context(open_workers("gatewayd-inbox", size=1))
    exec_runner = ExecRunner(settings=waiters, offload=io.call)
    agent_runner = AgentTurnRunner(
        {a.name: a for a in config.agents}, clock=clock, settings=waiters, offload=io.call
    )
    return Runners(
        exec=exec_runner,
        agent=agent_runner,
        by_kind={
            PayloadKind.EXEC: exec_runner,
            PayloadKind.AGENT_TURN: agent_runner,
            PayloadKind.SYSTEM_EVENT: SystemEventRunner(offload=inbox.call),
        },
    )
