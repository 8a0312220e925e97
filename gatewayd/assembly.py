"""The core of a gateway, assembled: bus, run pipeline, timer and the operations on them.

The daemon, the in-process test harness and the benchmarks all build it here,
so that each wires the same pieces the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gatewayd.api.gateway import Gateway
from gatewayd.api.values import Identity
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.model import PayloadKind
from gatewayd.runners.base import Runner
from gatewayd.runs import PipelineSettings, RunPipeline, open_pipeline
from gatewayd.scheduler import Scheduler
from gatewayd.settings import GATEWAY
from gatewayd.store.base import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Core:
    bus: Bus
    pipeline: RunPipeline
    scheduler: Scheduler
    gateway: Gateway


@asynccontextmanager
async def open_core(
    *,
    store: Store,
    clock: Clock,
    runners: Mapping[PayloadKind, Runner],
    settings: PipelineSettings,
    identity: Identity,
    event_queue: int = GATEWAY.event_queue,
    agents: frozenset[str] | None = None,
) -> AsyncIterator[Core]:
    """The core on an open ``store``; leaving the context ends its runs' tasks.

    The timer is built but not started: the caller loads it and runs it.
    """
    bus = Bus(store, queue_size=event_queue)
    try:
        async with open_pipeline(
            store=store, clock=clock, runners=runners, settings=settings, bus=bus
        ) as pipeline:
            scheduler = Scheduler(store=store, clock=clock, pipeline=pipeline)
            gateway = Gateway(
                store=store,
                clock=clock,
                pipeline=pipeline,
                scheduler=scheduler,
                identity=identity,
                bus=bus,
                agents=agents,
            )
            yield Core(bus=bus, pipeline=pipeline, scheduler=scheduler, gateway=gateway)
    finally:
        bus.close_subscriptions()
