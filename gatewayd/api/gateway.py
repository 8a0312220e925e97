"""The operations users and scripts call, whatever the transport: a gateway's four parts.

:class:`Gateway` holds ``reads`` (jobs with their state, the status, sessions,
events), ``jobs`` (changing them), ``runs`` (running, cancelling, waiting,
history) and ``imports`` (from another scheduler). Each answers with domain
values; :mod:`gatewayd.views` turns them into JSON. Every change is written to
the store first, then told to the timer; reads change nothing (I8).
"""

from __future__ import annotations

from gatewayd.api.imports import Imports
from gatewayd.api.jobs import Jobs
from gatewayd.api.reads import Reads
from gatewayd.api.runs import Runs
from gatewayd.api.values import Identity
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.runs import RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.settings import DEFAULT_RETENTION, Retention
from gatewayd.store.base import Store


class Gateway:
    """The operations, in four parts; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        pipeline: RunPipeline,
        scheduler: Scheduler,
        identity: Identity,
        bus: Bus,
        agents: frozenset[str] | None = None,
        sinks: frozenset[str] = frozenset(),
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self.identity = identity
        self.reads = Reads(
            store=store,
            clock=clock,
            pipeline=pipeline,
            scheduler=scheduler,
            identity=identity,
            bus=bus,
        )
        self.jobs = Jobs(
            store=store,
            clock=clock,
            pipeline=pipeline,
            scheduler=scheduler,
            reads=self.reads,
            bus=bus,
            agents=agents,
            sinks=sinks,
        )
        self.runs = Runs(store=store, pipeline=pipeline, scheduler=scheduler, reads=self.reads)
        self.imports = Imports(store=store, clock=clock, jobs=self.jobs, retention=retention)
