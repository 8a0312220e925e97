"""The bus: events durable with their change, in seq order; slow subscribers dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from gatewayd.broker import LocalBroker
from gatewayd.bus import Bus
from gatewayd.errors import Conflict
from gatewayd.events import LIFECYCLE, RunQueued, SessionFailed, SessionStarted
from gatewayd.model import ErrorKind, RunStatus, SessionStatus, StopReason
from gatewayd.store import MemoryStore
from gatewayd.store.base import Envelope, Publication

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def queued(n: int) -> RunQueued:
    return RunQueued(
        ts=T0, run_id=f"r{n}", job_id="j", job_name="j", status=RunStatus.QUEUED, trigger="manual"
    )


async def open_bus(
    store: MemoryStore | None = None, *, broker: LocalBroker | None = None, **kw: Any
) -> Bus:
    bus = Bus(store or MemoryStore(), broker=broker or LocalBroker(), **kw)
    await bus.open()
    return bus


async def read_until(subscription: Any, count: int) -> list[Envelope]:
    got: list[Envelope] = []
    with anyio.fail_after(5):
        async for envelope in subscription:
            got.append(envelope)
            if len(got) == count:
                break
    return got


class TestBus:
    async def test_events_are_durable_and_numbered_by_the_store(self) -> None:
        """I10: once publish returns, the events are stored under the seqs the store gave."""
        store = MemoryStore()
        bus = await open_bus(store)
        with bus.subscribe() as subscription:
            await bus.publish(queued(1), queued(2))
            subscription.close()
            offered = [e async for e in subscription]
        assert [e["seq"] for e in offered] == [1, 2]
        assert await store.latest_events(limit=5) == offered

    async def test_a_subscription_to_some_streams_queues_only_theirs(self) -> None:
        """A subscription that names streams queues only their events, and still the gap.

        The timer follows only job events: the run and lifecycle events of every
        run must neither fill its queue nor wake it.
        """
        bus = await open_bus(queue_size=2)
        common: dict[str, Any] = {
            "run_id": "r",
            "job_id": "j",
            "session_key": "cron:j:run:r",
            "session_id": "s",
        }
        with bus.subscribe(streams=frozenset({LIFECYCLE})) as subscription:
            await bus.publish(queued(1), queued(2), queued(3), SessionStarted(ts=T0, **common))
            await bus.publish(SessionStarted(ts=T0, **common), SessionStarted(ts=T0, **common))
            got = await read_until(subscription, 3)
        assert [e["stream"] for e in got] == [LIFECYCLE, LIFECYCLE, "gap"]
        assert [e["seq"] for e in got[:2]] == [4, 5]
        assert got[2]["missed_from_seq"] == 6

    async def test_a_refused_change_publishes_none_of_its_events(self) -> None:
        """publish_with: events are offered only if the change they go with was written."""
        store = MemoryStore()
        bus = await open_bus(store)

        async def refused(publication: Publication) -> None:
            raise Conflict("refused")

        with bus.subscribe() as subscription:
            with pytest.raises(Conflict):
                await bus.publish_with(refused, queued(1))
            await bus.publish(queued(2))
            subscription.close()
            received = [e async for e in subscription]
        assert [e["run_id"] for e in received] == ["r2"]
        assert [e["run_id"] for e in await store.latest_events(limit=5)] == ["r2"]

    async def test_a_cancelled_publisher_still_sees_its_write_through(self) -> None:
        """A write once handed to the store is waited for: its events are stored and offered."""
        store = MemoryStore()
        bus = await open_bus(store)
        with bus.subscribe() as subscription:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await bus.publish(queued(1))
            subscription.close()
            received = [e["run_id"] async for e in subscription]
        assert received == ["r1"]
        assert [e["run_id"] for e in await store.latest_events(limit=5)] == ["r1"]

    async def test_seqs_increase_under_concurrent_publishers(self) -> None:
        """I10: concurrent publishers' events are offered once each, in seq order."""
        bus = await open_bus()
        with bus.subscribe() as subscription:
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(bus.publish, queued(n))
            subscription.close()
            seqs = [e["seq"] async for e in subscription]
        assert seqs == list(range(1, 51))

    async def test_a_reader_that_never_reads_is_dropped_with_a_gap_marker(self) -> None:
        """publish never waits for a slow reader: it is dropped, and told from where."""
        bus = await open_bus(queue_size=10)
        with bus.subscribe() as stuck:
            with anyio.fail_after(5):
                for n in range(500):
                    await bus.publish(queued(n))
            assert stuck.dropped
            assert bus.subscribers == 0
            received = [e async for e in stuck]
        assert [e["seq"] for e in received[:10]] == list(range(1, 11))
        gap = received[-1]
        assert (gap["stream"], gap["phase"], gap["missed_from_seq"]) == ("gap", "dropped", 11)
        assert len(received) == 11

    async def test_live_subscription_gets_events_as_they_come(self) -> None:
        bus = await open_bus()
        got: list[int] = []
        async with anyio.create_task_group() as tg:
            with bus.subscribe() as subscription:

                async def read() -> None:
                    async for envelope in subscription:
                        got.append(envelope["seq"])
                        if len(got) == 3:
                            return

                tg.start_soon(read)
                for n in range(3):
                    await bus.publish(queued(n))
        assert got == [1, 2, 3]


class TestTwoBusesOnOneStore:
    """I10 across instances: each bus offers every event of the store, in seq order, once."""

    async def test_a_follower_offers_the_other_instances_events_in_order(self) -> None:
        """Events another bus appended are read from the store on its hint, none missed."""
        store, broker = MemoryStore(), LocalBroker()
        mine, theirs = await open_bus(store, broker=broker), await open_bus(store, broker=broker)
        async with anyio.create_task_group() as tg:
            await tg.start(mine.follow)
            with mine.subscribe() as subscription:
                for n in range(30):
                    await (mine if n % 3 == 0 else theirs).publish(queued(n))
                got = await read_until(subscription, 30)
            tg.cancel_scope.cancel()
        assert [e["seq"] for e in got] == list(range(1, 31))
        assert [e["run_id"] for e in got] == [f"r{n}" for n in range(30)]

    async def test_without_a_hint_the_backstop_reads_them(self) -> None:
        """A lost hint delays an event by at most the backstop; it never loses one."""
        store = MemoryStore()
        mine = await open_bus(store, broker=LocalBroker(), backstop_s=0.05)
        theirs = await open_bus(store, broker=LocalBroker())  # hints that never reach ``mine``
        async with anyio.create_task_group() as tg:
            await tg.start(mine.follow)
            with mine.subscribe() as subscription:
                await theirs.publish(queued(1))
                await mine.publish(queued(2))
                got = await read_until(subscription, 2)
            tg.cancel_scope.cancel()
        assert [(e["seq"], e["run_id"]) for e in got] == [(1, "r1"), (2, "r2")]


class TestSessionRows:
    async def test_start_then_error_makes_the_row_terminal(self) -> None:
        """I5: the row is written with start and terminal with error, as publish returns."""
        store = MemoryStore()
        bus = await open_bus(store)
        common: dict[str, Any] = {
            "run_id": "r",
            "job_id": "j",
            "session_key": "cron:j:run:r",
            "session_id": "s",
        }
        await bus.publish(SessionStarted(ts=T0, **common))
        row = await store.get_session("cron:j:run:r")
        assert row is not None and row.status is SessionStatus.RUNNING
        later = T0.replace(second=2)
        await bus.publish(
            SessionFailed(
                ts=later,
                error="job execution timed out",
                error_kind=ErrorKind.TIMEOUT,
                stop_reason=StopReason.TIMEOUT,
                **common,
            )
        )
        row = await store.get_session("cron:j:run:r")
        assert row is not None
        assert (row.status, row.stop_reason, row.runtime_ms) == (
            SessionStatus.TIMED_OUT,
            "timeout",
            2000,
        )
        assert row.ended_at == later
