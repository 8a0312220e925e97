"""The operations users and scripts call, whatever the transport: a gateway's three parts.

:class:`Gateway` holds ``reads`` (jobs with their state, the status, sessions,
events), ``jobs`` (changing them) and ``runs`` (running, cancelling, waiting,
history). Each answers with domain values; :mod:`gatewayd.views` turns them
into JSON. Every change is written to the store first, then told to the timer;
reads change nothing (I8).
"""

from __future__ import annotations

from gatewayd.api.jobs import Jobs
from gatewayd.api.reads import Reads
from gatewayd.api.runs import Runs
from gatewayd.api.values import Identity
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.runs import RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.store.base import Store


class Gateway:
    """The operations, in three parts; see the module docstring."""

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
