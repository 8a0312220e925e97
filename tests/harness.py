"""An in-process gatewayd for unit tests: memory store, FakeClock, FakeRunner.

The real pipeline, scheduler and Gateway run on the test's event loop; only the
clock, the store backend and the runner are fakes (the daemon tests use real ones).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from gatewayd import views
from gatewayd.alerting.values import SinkSpec
from gatewayd.alerting.watch import AlertWatcher
from gatewayd.api.gateway import Gateway
from gatewayd.api.values import Identity
from gatewayd.assembly import open_core
from gatewayd.broker import Broker
from gatewayd.bus import Bus
from gatewayd.clock import FakeClock
from gatewayd.model import Instance, PayloadKind, Run, RunStatus
from gatewayd.runners.base import Runner
from gatewayd.runs import PipelineSettings, RunPipeline
from gatewayd.scheduler import Scheduler
from gatewayd.store import MemoryStore, SQLiteStore, Store
from gatewayd.store.postgres import PostgresStore
from gatewayd.testing import FakeRunner

from tests import pgserver

T = TypeVar("T")
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The harness instance never loses its lease, however far a test moves the fake clock.
HARNESS_LEASE_S = 10 * 365 * 86400.0
HARNESS_HOST_ID = "test-host"
# PostgreSQL's cases run whenever the test server answers (see tests/pgserver.py).
STORE_KINDS = ("memory", "sqlite", "postgresql")
# The stores shared across hosts: their claims of due jobs are exclusive (see
# Store.claim_due); the embedded ones give every job asked for.
SHARED_STORE_KINDS = ("postgresql",)
# The store a harness opens when given none: the ``each_store`` fixture sets it per test.
default_store_kind = "memory"


def new_store(kind: str, state_dir: Path, clock: FakeClock) -> Store:
    """A fresh store of ``kind`` (one of :data:`STORE_KINDS`), not yet open."""
    if kind == "sqlite":
        return SQLiteStore(state_dir / "gatewayd.db")
    if kind == "postgresql":
        return PostgresStore(pgserver.fresh_location())
    assert kind == "memory", kind
    return MemoryStore(clock=clock)


@dataclass(kw_only=True)
class Harness:
    bus: Bus
    clock: FakeClock
    store: Store
    runner: FakeRunner
    pipeline: RunPipeline
    scheduler: Scheduler
    gateway: Gateway
    alerts: AlertWatcher
    instance_id: str
    state_dir: Path

    async def add(self, **flat: Any) -> str:
        from gatewayd.flatspec import spec_from_flat

        job = await self.gateway.jobs.add(spec_from_flat(flat))
        return job.id

    async def run_job(self, ref: str, *, due: bool = False) -> dict[str, Any]:
        """``cron.run`` as a client sees it: the JSON of :func:`views.run_request_to_json`."""
        return views.run_request_to_json(await self.gateway.runs.request(ref, due=due))

    async def runs(self, job_id: str) -> list[Run]:
        """The job's runs, oldest first."""
        return list(reversed(await self.store.list_runs(job_id, limit=1000)))

    async def asleep(self) -> bool:
        """Whether the timer is asleep."""
        return self.scheduler.naps[1]

    async def ended_runs(
        self, job_id: str, count: int, status: RunStatus | None = None
    ) -> list[Run]:
        """The job's runs once ``count`` of them have ended (all with ``status`` if given)."""
        runs = await self.runs(job_id)
        if len(runs) < count or sum(r.status.is_terminal for r in runs) < count:
            return []
        if status is not None and any(r.status is not status for r in runs):
            return []
        return runs

    async def at_least(self, job_id: str, count: int) -> list[Run]:
        """The job's runs once there are ``count`` of them, oldest first."""
        runs = await self.runs(job_id)
        return runs if len(runs) >= count else []

    async def job_gone(self, job_id: str) -> bool:
        return await self.store.get_job(job_id) is None

    async def until(self, check: Callable[[], Awaitable[T]], *, timeout: float = 5.0) -> T:
        """Run the event loop until ``check()`` is truthy; fail after ``timeout`` real seconds."""
        with anyio.fail_after(timeout):
            while True:
                value = await check()
                if value:
                    return value
                await anyio.sleep(0)

    async def advance_to(self, when: datetime) -> None:
        """Move the clock to ``when`` and wait until the timer has handled what is due."""
        naps, _ = self.scheduler.naps
        wake_at = self.scheduler.next_wake_at
        self.clock.set(when)
        if wake_at is not None and wake_at <= when:
            await self.until(self._slept_again(naps))

    def _slept_again(self, naps: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            count, asleep = self.scheduler.naps
            return count > naps and asleep

        return check


@asynccontextmanager
async def open_harness(
    tmp_path: Path,
    *,
    start: datetime = START,
    system_events: Runner | None = None,
    exec_runner: Runner | None = None,
    store: Store | None = None,
    clock: FakeClock | None = None,
    broker: Broker | None = None,
    instance_id: str = "test-instance",
    lease_s: float = HARNESS_LEASE_S,
    sinks: Sequence[SinkSpec] = (),
    **settings: Any,
) -> AsyncIterator[Harness]:
    """A core on a memory store and a fake clock; every payload runs on one ``FakeRunner``.

    ``system_events`` and ``exec_runner`` replace the fake for their payloads,
    and ``store`` the memory store (opened here). Instances that share a store
    (several harnesses in one test) share its ``clock`` and ``broker`` too, and
    each has its own ``instance_id`` and ``tmp_path`` for its state directory.
    Without ``store``, it opens one of :data:`default_store_kind`, and closes it.
    """
    clock = clock or FakeClock(start)
    if store is None:
        async with (
            _own_store(new_store(default_store_kind, tmp_path, clock)) as own,
            open_harness(
                tmp_path,
                start=start,
                system_events=system_events,
                exec_runner=exec_runner,
                store=own,
                clock=clock,
                broker=broker,
                instance_id=instance_id,
                lease_s=lease_s,
                sinks=sinks,
                **settings,
            ) as h,
        ):
            yield h
        return
    await store.open()
    await store.register_instance(
        Instance(
            instance_id=instance_id,
            pid=1,
            host="test",
            host_id=HARNESS_HOST_ID,
            state_dir=str(tmp_path),
            started_at=start,
        ),
        lease_s=lease_s,
    )
    runner = FakeRunner()
    options: dict[str, Any] = {
        "instance_id": instance_id,
        "state_dir": tmp_path,
        "socket_path": tmp_path / "gatewayd.sock",
    }
    options.update(settings)
    async with open_core(
        store=store,
        clock=clock,
        broker=broker,
        runners={
            PayloadKind.EXEC: exec_runner or runner,
            PayloadKind.SYSTEM_EVENT: system_events or runner,
            PayloadKind.AGENT_TURN: runner,
        },
        settings=PipelineSettings(**options),
        identity=Identity(
            instance_id=instance_id,
            pid=1,
            host="test",
            host_id=HARNESS_HOST_ID,
            state_dir=tmp_path,
            socket_path=tmp_path / "gatewayd.sock",
            started_at=start,
        ),
        lease_s=lease_s,
        sinks=sinks,
    ) as core:
        await core.scheduler.load()
        async with anyio.create_task_group() as tg:
            await tg.start(core.scheduler.run)
            yield Harness(
                bus=core.bus,
                clock=clock,
                store=store,
                runner=runner,
                pipeline=core.pipeline,
                scheduler=core.scheduler,
                gateway=core.gateway,
                alerts=core.alerts,
                instance_id=instance_id,
                state_dir=tmp_path,
            )
            tg.cancel_scope.cancel()


@asynccontextmanager
async def _own_store(store: Store) -> AsyncIterator[Store]:
    try:
        yield store
    finally:
        await store.close()
