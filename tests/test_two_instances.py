"""Two instances on one store: the store, not an instance's memory, keeps the record true.

Each test runs over two pipelines on one memory store, over two SQLite store
objects (two connections, two instance ids) on one file, and over two
PostgreSQL store objects (two pools) on one schema. The instances
share a fake clock and, as instances in one process do, a local broker.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import pytest_asyncio
from gatewayd.broker import LocalBroker
from gatewayd.clock import FakeClock
from gatewayd.errors import StoreUnreachable
from gatewayd.model import Instance, InstanceState, Run, RunStatus, StopReason, Trigger
from gatewayd.recovery import Recovery, Settlement
from gatewayd.runners.exec import ExecRunner
from gatewayd.store import MemoryStore, SQLiteStore, Store
from gatewayd.store.base import Envelope, StoreHealth
from gatewayd.store.pgjobs import BUSY_LOOK_AGAIN_S
from gatewayd.store.postgres import PostgresStore

from tests import pgserver
from tests.conftest import needs_postgres
from tests.harness import HARNESS_HOST_ID, START, STORE_KINDS, Harness, open_harness

StoreFactory = Callable[[], Store]
SLOTS = 50  # per job, each a step of the shared clock that both timers act on


@dataclass(kw_only=True)
class Pair:
    """What two instances share: a store (one object or two on one file), a clock, hints.

    The stores its instances opened are closed when the test ends (a test may
    read an instance's store after the instance has stopped).
    """

    new_store: StoreFactory
    clock: FakeClock
    broker: LocalBroker
    root: Path
    opened: list[Store] = field(default_factory=list)

    @asynccontextmanager
    async def instance(self, name: str, **kw: Any) -> AsyncIterator[Harness]:
        state_dir = self.root / name
        state_dir.mkdir()
        store = self.new_store()
        self.opened.append(store)
        async with open_harness(
            state_dir,
            store=store,
            clock=self.clock,
            broker=self.broker,
            instance_id=name,
            **kw,
        ) as h:
            yield h


def _factory(kind: str, root: Path, clock: FakeClock) -> StoreFactory:
    if kind == "postgresql":
        location = pgserver.fresh_location()
        return lambda: PostgresStore(location)
    if kind == "memory":
        shared = MemoryStore(clock=clock)
        return lambda: shared
    path = root / "shared.db"
    return lambda: SQLiteStore(path)


@pytest_asyncio.fixture(params=STORE_KINDS)
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    needs_postgres(request.param)
    clock = FakeClock(START)
    shared = Pair(
        new_store=_factory(request.param, tmp_path, clock),
        clock=clock,
        broker=LocalBroker(),
        root=tmp_path,
    )
    try:
        yield shared
    finally:
        for store in shared.opened:
            await store.close()


async def until(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Run the loop until ``await check()`` is truthy (a condition with a deadline)."""
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.005)


def queued_orphan(job_id: str, job_name: str, *, owner: str) -> Run:
    """A queued run of ``owner``, recorded as an instance leaves it when it dies."""
    return Run(
        run_id=f"queued-of-{owner}",
        job_id=job_id,
        job_name=job_name,
        trigger=Trigger.MANUAL,
        status=RunStatus.QUEUED,
        queued_at=START,
        session_key=f"cron:{job_name}:run:queued-of-{owner}",
        owner=owner,
    )


def lease_lapsed(h: Harness, instance_id: str) -> Callable[[], Awaitable[bool]]:
    """A check: ``instance_id`` is no longer alive, as ``h``'s store judges it."""

    async def check() -> bool:
        got = await h.store.get_instance(instance_id)
        return got is not None and not got.lives_at(await h.store.now())

    return check


class TestSlotsOnce:
    """I7, I10: with both timers firing, each slot of each job is recorded exactly once."""

    async def test_twenty_jobs_a_thousand_slots(self, pair: Pair) -> None:
        async with pair.instance("a") as a, pair.instance("b") as b:
            a.runner.auto_finish = b.runner.auto_finish = True
            jobs = [
                await (a if n % 2 else b).add(
                    name=f"j{n}", every="1m", command="true", overlap="allow"
                )
                for n in range(20)
            ]

            async def both_know_every_job() -> bool:
                return all(h.scheduler.tracked == 20 for h in (a, b))

            await until(both_know_every_job)
            for step in range(1, SLOTS + 1):
                slot = START + timedelta(minutes=step)
                pair.clock.set(slot)

                async def slot_recorded(slot: datetime = slot) -> bool:
                    # The clock moves on only once every job's slot is recorded:
                    # a slot still due when it moves would be a missed one.
                    for job_id in jobs:
                        if not any(r.scheduled_for == slot for r in await a.runs(job_id)):
                            return False
                    return True

                await until(slot_recorded)

            async def all_recorded() -> list[Run]:
                runs = [r for j in jobs for r in await a.runs(j)]
                return (
                    runs
                    if len(runs) >= 20 * SLOTS and all(r.status.is_terminal for r in runs)
                    else []
                )

            runs = await until(all_recorded, timeout=30)
        for job_id in jobs:
            slots = [r.scheduled_for for r in runs if r.job_id == job_id]
            assert sorted(s for s in slots if s) == [
                START + timedelta(minutes=m) for m in range(1, SLOTS + 1)
            ]
        assert len(runs) == 20 * SLOTS
        odd = [r for r in runs if r.status is not RunStatus.SUCCEEDED]
        assert not odd, [
            (r.job_name, r.owner, r.trigger, r.status, r.scheduled_for, r.error) for r in odd
        ]
        owners = {owner: sum(r.owner == owner for r in runs) for owner in ("a", "b")}
        if not a.store.exclusive_claims:
            assert all(owners.values()), f"both timers fired slots: {owners}"
        # With exclusive claims, the timer the fake clock wakes first claims every
        # slot and the other finds them held: how real instances share the slots
        # is measured by tests/test_cluster.py, on their own clocks.


class TestAdmissionAcrossInstances:
    """I10: a ``skip`` job never has two live runs, whichever instances are asked."""

    async def test_a_hundred_manual_runs_never_two_live(self, pair: Pair) -> None:
        async with pair.instance("a") as a, pair.instance("b") as b:
            job_id = await a.add(name="s", every="1h", command="true", overlap="skip")
            answers: list[dict[str, Any]] = []
            for _ in range(50):

                async def ask(h: Harness) -> None:
                    answers.append(await h.run_job(job_id))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask, a)
                    tg.start_soon(ask, b)
                live = await a.store.live_runs(job_id)
                assert len(live) == 1, f"never two live at once: {live}"
                run_id = live[0].run_id

                async def started(run_id: str = run_id) -> list[Any]:
                    return [
                        e for h in (a, b) for e in h.runner.started if e.ctx.run.run_id == run_id
                    ]

                [execution] = await until(started)
                execution.finish()
                await a.gateway.runs.wait(live[0].run_id, timeout_s=5)
        ran = [x for x in answers if x["ran"]]
        refused = [x for x in answers if not x["ran"]]
        assert len(answers) == 100 and len(ran) == 50
        assert {x["reason"] for x in refused} == {"already-running"}
        assert len(await a.runs(job_id)) == 50


class TestEventsAcrossInstances:
    """I10: seqs are strictly increasing in commit order; a concurrent follower misses none."""

    async def test_each_bus_offers_every_event_once_in_order(self, pair: Pair) -> None:
        async with pair.instance("a") as a, pair.instance("b") as b:
            a.runner.auto_finish = b.runner.auto_finish = True
            with a.bus.subscribe() as seen_by_a, b.bus.subscribe() as seen_by_b:
                job_a = await a.add(name="ja", every="1h", command="true", overlap="allow")
                job_b = await b.add(name="jb", every="1h", command="true", overlap="allow")

                async def runs_on(h: Harness, job_id: str) -> None:
                    for _ in range(20):
                        await h.run_job(job_id)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(runs_on, a, job_a)
                    tg.start_soon(runs_on, b, job_b)
                    tg.start_soon(runs_on, a, job_b)

                async def ended() -> bool:
                    runs = await a.runs(job_a) + await a.runs(job_b)
                    return len(runs) == 60 and all(r.status.is_terminal for r in runs)

                await until(ended)
                stored = await a.store.events_after(0, limit=10_000)
                last = stored[-1]["seq"]
                got: dict[str, list[Envelope]] = {}
                for name, subscription in (("a", seen_by_a), ("b", seen_by_b)):
                    got[name] = []
                    with anyio.fail_after(10):
                        async for envelope in subscription:
                            got[name].append(envelope)
                            if envelope["seq"] == last:
                                break
        seqs = [e["seq"] for e in stored]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "strictly increasing, no hole"
        assert got["a"] == stored and got["b"] == stored


class TestLeaseLapse:
    """I2, I4, I10: a dead instance's runs are settled once; its live process is re-adopted."""

    # Instance a is abandoned in this process as a crash would leave it: the
    # waiter it started is never reaped by a, and the Popen object a drops says so.
    @pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
    async def test_b_settles_a_exactly_once_and_adopts_its_live_process(
        self, pair: Pair, tmp_path: Path
    ) -> None:
        go = tmp_path / "go"
        command = f"while [ ! -e {go} ]; do sleep 0.02; done; exit 7"
        async with pair.instance("b") as b, pair.instance("c") as c:
            async with pair.instance("a", exec_runner=ExecRunner(), lease_s=0.3) as a:
                job_id = await a.add(name="w", every="1h", shell=command, overlap="allow")
                started = await a.run_job(job_id)

                async def running() -> Run | None:
                    run = await a.store.get_run(started["run_id"])
                    return run if run and run.pid and run.status is RunStatus.RUNNING else None

                process = await until(running)
                await a.store.record_runs([queued_orphan(job_id, "w", owner="a")])
                await a.pipeline.detach_all()  # a dies: its process goes on, its lease lapses
            pair.clock.advance(1)

            await until(lease_lapsed(b, "a"))
            done: dict[str, Settlement] = {}

            async def settle(h: Harness) -> None:
                done[h.instance_id] = await recovery_of(h).settle()

            async with anyio.create_task_group() as tg:
                tg.start_soon(settle, b)
                tg.start_soon(settle, c)
            taken = [n for n, s in done.items() if "a" in s.taken_over]
            adopted = [n for n, s in done.items() if process.run_id in s.adopted]
            interrupted = [n for n, s in done.items() if "queued-of-a" in s.interrupted]
            assert len(taken) == 1 and len(adopted) == 1 and len(interrupted) == 1, done
            gone = await b.store.get_instance("a")
            assert gone is not None and gone.state is InstanceState.GONE
            adopter = b if adopted == ["b"] else c
            alive = await b.store.get_run(process.run_id)
            assert alive is not None and alive.status is RunStatus.RUNNING, "never marked lost"
            assert alive.owner == adopter.instance_id
            go.touch()
            ended = await adopter.gateway.runs.wait(process.run_id, timeout_s=10)
        assert (ended.status, ended.exit_code) == (RunStatus.FAILED, 7), "its real ending"
        orphan = await b.store.get_run("queued-of-a")
        assert orphan is not None and orphan.status is RunStatus.INTERRUPTED
        assert orphan.stop_reason is StopReason.OWNER_GONE
        gc.collect()  # a's dropped Popen objects go now, under this test's filter


def recovery_of(h: Harness) -> Recovery:
    return Recovery(
        store=h.store,
        clock=h.clock,
        pipeline=h.pipeline,
        exec_runner=ExecRunner(),
        instance_id=h.instance_id,
        state_dir=h.state_dir,
        host_id=HARNESS_HOST_ID,
    )


class TestCancelAcrossInstances:
    """I2, I10: a cancel asked on B stops the run A drives, and B answers with its ending."""

    async def test_b_cancels_a_run_of_a(self, pair: Pair) -> None:
        async with pair.instance("a") as a, pair.instance("b") as b:
            job_id = await a.add(name="c", every="1h", command="sleep 60")
            run_id = (await a.run_job(job_id))["run_id"]
            execution = await a.runner.wait_started(1)
            [cancelled] = await b.gateway.runs.cancel(run_id, run_only=True)
            assert cancelled.status is RunStatus.CANCELLED
            assert cancelled.stop_reason is StopReason.CANCELLED
            assert execution.stopped_with_grace is not None, "a stopped its work"
            stored = await b.store.get_run(run_id)
            assert stored == cancelled and stored.owner == "a"

    async def test_a_queued_run_of_a_lapsed_owner_is_cancelled_at_once(self, pair: Pair) -> None:
        """I2, I10: an owner whose lease lapsed is dead, so its queued run is cancelled here,
        with no request left for it to carry out."""
        async with pair.instance("b") as b:
            async with pair.instance("a", lease_s=0.3) as a:
                job_id = await a.add(name="q", every="1h", command="true")
                await a.store.record_runs([queued_orphan(job_id, "q", owner="a")])
            pair.clock.advance(1)

            await until(lease_lapsed(b, "a"))
            with anyio.fail_after(b.pipeline.cancel_wait_s / 2):
                [cancelled] = await b.gateway.runs.cancel("queued-of-a", run_only=True)
        assert cancelled.status is RunStatus.CANCELLED
        assert cancelled.cancel_requested is None, "no request waits for a dead owner"


class TestClaimsOnASharedStore:
    """I7, I10: on a store shared across hosts, the timer claims its slots, and waits
    for another's claim without asking again and again."""

    async def test_a_job_being_claimed_elsewhere_is_looked_at_a_moment_later(
        self, tmp_path: Path
    ) -> None:
        """A job whose row another transaction holds is skipped, looked at again a moment
        later (not at once, over and over), and fired once the row is free."""
        needs_postgres("postgresql")
        store = PostgresStore(pgserver.fresh_location())
        async with open_harness(tmp_path, store=store) as h:
            h.runner.auto_finish = True
            job_id = await h.add(name="minutely", every="1m", command="true")
            ahead = h.scheduler.claims_ahead
            assert ahead > timedelta(0)
            claim_at = START + timedelta(minutes=1) - ahead
            assert await h.clock.wait_for_sleeper() == claim_at
            other = await psycopg.AsyncConnection.connect(pgserver.URL)
            try:
                await other.execute(f"SET search_path TO {store.location.schema}")
                await other.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
                h.clock.set(claim_at)
                again = claim_at + timedelta(seconds=BUSY_LOOK_AGAIN_S)
                with anyio.fail_after(5):
                    assert await h.clock.wait_for_sleeper(until=again) == again
                assert await h.runs(job_id) == []
                await other.commit()
            finally:
                await other.close()
            await h.advance_to(START + timedelta(minutes=1))
            runs = await h.until(partial(h.ended_runs, job_id, 1, RunStatus.SUCCEEDED))
            assert [r.scheduled_for for r in runs] == [START + timedelta(minutes=1)]


class OutageSeen(MemoryStore):
    """A memory store whose health can go and come back, as a server's does: a memory
    store cannot fail for real, so the test says when it does (a mock, named)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self._health_watchers: list[Callable[[StoreHealth], None]] = []
        self._fault: StoreUnreachable | None = None

    @property
    def health(self) -> StoreHealth:
        return StoreHealth(fault=self._fault)

    def watch_health(self, listener: Callable[[StoreHealth], None]) -> None:
        self._health_watchers.append(listener)

    def outage(self, fault: StoreUnreachable | None) -> None:
        self._fault = fault
        for listener in self._health_watchers:
            listener(self.health)


class TestAfterAnOutage:
    """I4: after the store was out of reach, every lease has lapsed; an instance judges
    the others only once it has been in touch with the store for a whole lease."""

    async def test_no_live_instance_is_taken_over_for_an_outage(self, tmp_path: Path) -> None:
        """B, back from an outage, leaves A's lapsed lease alone for one lease (A's time
        to renew it), and takes A over only if it is still lapsed after that."""
        clock = FakeClock(START)
        store = OutageSeen(clock)
        async with open_harness(tmp_path / "b", store=store, clock=clock, instance_id="b") as b:
            recovery = Recovery(
                store=store,
                clock=clock,
                pipeline=b.pipeline,
                exec_runner=ExecRunner(),
                instance_id="b",
                state_dir=b.state_dir,
                host_id="another-host",
                lease_s=10.0,
            )
            a = Instance(
                instance_id="a",
                pid=2,
                host="h",
                host_id="another-host",
                state_dir="/state/of/a",  # alive or not, nothing here proves A dead
                started_at=START,
            )
            await store.register_instance(a, lease_s=10.0)
            store.outage(StoreUnreachable("the store does not answer"))
            clock.advance(30)  # the outage: every lease lapsed meanwhile
            store.outage(None)
            assert (await recovery.settle()).taken_over == []
            got = await store.get_instance("a")
            assert got is not None and got.state is InstanceState.LIVE
            clock.advance(10.5)  # a whole lease in touch, and A never renewed
            assert (await recovery.settle()).taken_over == ["a"]
