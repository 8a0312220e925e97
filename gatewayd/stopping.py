"""How a daemon lets go at shutdown: of its runs, and of writes its store holds."""

from __future__ import annotations

import anyio
import structlog

from gatewayd.model import StopReason
from gatewayd.runs import RunPipeline
from gatewayd.settings import OnShutdown
from gatewayd.store.base import Store

log = structlog.get_logger("gatewayd.daemon")


async def end_runs(
    pipeline: RunPipeline, on_shutdown: OnShutdown, *, drain_timeout_s: float
) -> None:
    """Stop this instance's runs, or leave them to the next instance, as ``on_shutdown`` says.

    An instance whose lease was taken over is given ``detach``: its runs have
    a new owner.
    """
    if on_shutdown is OnShutdown.DETACH:
        if pipeline.active_count:
            log.info("leaving runs to the next instance", runs=pipeline.active_count)
        await pipeline.detach_all()
        return
    if on_shutdown is OnShutdown.WAIT and pipeline.active_count:
        log.info("waiting for runs to end", runs=pipeline.active_count)
        with anyio.move_on_after(drain_timeout_s):
            await pipeline.wait_idle()
    await pipeline.stop_all(StopReason.SHUTDOWN)


async def let_go_of_held_writes(store: Store, *, drain_timeout_s: float) -> None:
    """A store that holds writes through a fault gets ``drain_timeout_s`` to take them.

    Then it is closed, giving up (and naming in the log) what it still holds,
    so that the runs waiting on those writes can end: the next start settles
    them from their exit files.
    """
    fault = store.health.fault
    if fault is None:
        return
    if not fault.passes or not store.health.held:
        await store.close()  # nothing to wait for: it will not pass, or nothing is held
        return
    log.warning(
        "stopping while the store takes no writes; waiting for it",
        held=store.health.held,
        wait_s=drain_timeout_s,
    )
    with anyio.move_on_after(drain_timeout_s):
        recovered = anyio.Event()
        store.watch_health(lambda health: recovered.set() if health.writable else None)
        if not store.health.writable:
            await recovered.wait()
    if not store.health.writable:
        await store.close()
