"""The bus: persisted seqs, in-band subscribers awaited, slow out-of-band ones dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from gatewayd.bus import Bus
from gatewayd.events import Event, RunQueued, SessionFailed, SessionStarted
from gatewayd.model import ErrorKind, RunStatus, SessionStatus
from gatewayd.sessions import SessionPersister
from gatewayd.store import MemoryStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def queued(n: int) -> RunQueued:
    return RunQueued(
        ts=T0, run_id=f"r{n}", job_id="j", job_name="j", status=RunStatus.QUEUED, trigger="manual"
    )


class TestBus:
    async def test_in_band_subscribers_are_awaited_in_order(self) -> None:
        """publish returns after every in-band subscriber ran, each seeing the seq."""
        store = MemoryStore()
        bus = Bus(store)
        seen: list[tuple[str, int]] = []

        async def first(seq: int, event: Event) -> None:
            await anyio.sleep(0)
            seen.append(("first", seq))

        async def second(seq: int, event: Event) -> None:
            seen.append(("second", seq))

        bus.add_in_band(first)
        bus.add_in_band(second)
        envelope = await bus.publish(queued(1))
        assert seen == [("first", envelope["seq"]), ("second", envelope["seq"])]
        assert await store.latest_events(limit=5) == [envelope]

    async def test_seqs_increase_under_concurrent_publishers(self) -> None:
        store = MemoryStore()
        bus = Bus(store)
        with bus.subscribe() as subscription:
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(bus.publish, queued(n))
            subscription.close()
            seqs = [e["seq"] async for e in subscription]
        assert seqs == sorted(seqs) and len(set(seqs)) == 50

    async def test_a_reader_that_never_reads_is_dropped_with_a_gap_marker(self) -> None:
        """publish never waits for a slow reader: it is dropped, and told from where."""
        bus = Bus(MemoryStore(), queue_size=10)
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
        bus = Bus(MemoryStore())
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


class TestSessionPersister:
    async def test_start_then_error_makes_the_row_terminal(self) -> None:
        """The row is written on start and terminal on error, by the time publish returns."""
        store = MemoryStore()
        bus = Bus(store)
        bus.add_in_band(SessionPersister(store))
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
                stop_reason="timeout",
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
