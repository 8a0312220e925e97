"""The core of a gateway, assembled: bus, run pipeline, timer and the operations on them.

The daemon, the in-process test harness and the benchmarks all build it here,
so that each wires the same pieces the same way.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from gatewayd.alerting.delivery import Deliverer
from gatewayd.alerting.values import SinkSpec
from gatewayd.alerting.watch import AlertWatcher
from gatewayd.api.gateway import Gateway
from gatewayd.api.values import Identity
from gatewayd.broker import Broker, LocalBroker
from gatewayd.bus import Bus
from gatewayd.clock import Clock
from gatewayd.model import PayloadKind
from gatewayd.runners.base import Runner
from gatewayd.runs import PipelineSettings, RunPipeline, open_pipeline
from gatewayd.scheduler import Scheduler
from gatewayd.settings import CLUSTER, DEFAULT_RETENTION, GATEWAY, Retention
from gatewayd.store.base import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Core:
    bus: Bus
    broker: Broker
    pipeline: RunPipeline
    scheduler: Scheduler
    gateway: Gateway
    alerts: AlertWatcher


@asynccontextmanager
async def open_core(
    *,
    store: Store,
    clock: Clock,
    runners: Mapping[PayloadKind, Runner],
    settings: PipelineSettings,
    identity: Identity,
    broker: Broker | None = None,
    event_queue: int = GATEWAY.event_queue,
    backstop_s: float = CLUSTER.backstop_s,
    lease_s: float = CLUSTER.lease_s,
    agents: frozenset[str] | None = None,
    sinks: Sequence[SinkSpec] = (),
    sink_env: Mapping[str, str] | None = None,
    retention: Retention = DEFAULT_RETENTION,
) -> AsyncIterator[Core]:
    """The core on an open ``store``; leaving the context ends its runs' tasks.

    Its followers run inside the context: the bus reads what other instances
    append, and the pipeline carries out the stops asked of its runs; the
    alerts' watcher and deliverer run there too (``sinks`` are the config's
    ``[alerts.NAME]``; their commands get ``sink_env``, the process's own by
    default). The timer is built but not started: the caller loads it and runs it.
    """
    broker = broker or LocalBroker()
    bus = Bus(store, broker=broker, queue_size=event_queue, backstop_s=backstop_s)
    await bus.open()
    try:
        async with (
            open_pipeline(
                store=store,
                clock=clock,
                runners=runners,
                settings=settings,
                bus=bus,
                broker=broker,
                backstop_s=backstop_s,
            ) as pipeline,
            anyio.create_task_group() as followers,
        ):
            scheduler = Scheduler(
                store=store,
                clock=clock,
                pipeline=pipeline,
                bus=bus,
                instance_id=identity.instance_id,
                claim_s=lease_s,
            )
            gateway = Gateway(
                store=store,
                clock=clock,
                pipeline=pipeline,
                scheduler=scheduler,
                identity=identity,
                bus=bus,
                agents=agents,
                sinks=frozenset(s.name for s in sinks),
                retention=retention,
            )
            deliverer = Deliverer(
                store=store,
                clock=clock,
                sinks=sinks,
                env=os.environ if sink_env is None else sink_env,
            )
            watcher = AlertWatcher(
                store=store,
                clock=clock,
                bus=bus,
                jobs=gateway.jobs,
                deliverer=deliverer,
                host=identity.host,
                instance_id=identity.instance_id,
            )
            pipeline.add_finished_listener(watcher.after_run)
            pipeline.add_skipped_listener(watcher.skipped)
            await followers.start(bus.follow)
            await followers.start(pipeline.carry_out_cancels)
            await followers.start(scheduler.follow_jobs)
            await followers.start(deliverer.run)
            await followers.start(watcher.run)
            yield Core(
                bus=bus,
                broker=broker,
                pipeline=pipeline,
                scheduler=scheduler,
                gateway=gateway,
                alerts=watcher,
            )
            followers.cancel_scope.cancel()
    finally:
        bus.close_subscriptions()
