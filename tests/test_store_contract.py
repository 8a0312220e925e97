"""The store contract: one suite, run over every store (memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import orjson
import psycopg
import pytest
import pytest_asyncio
from gatewayd.alerting.values import Alert, AlertAttempt, AlertReason, AlertState
from gatewayd.clock import FakeClock
from gatewayd.errors import (
    ClaimLost,
    Conflict,
    LeaseLost,
    LockBusy,
    NameTaken,
    NotFound,
    RunAlreadyEnded,
    SlotTaken,
    StaleDecision,
    StoreCorrupt,
    StoreError,
)
from gatewayd.model import (
    AlertPolicy,
    ErrorKind,
    ExecPayload,
    Instance,
    InstanceState,
    Job,
    JobSource,
    Origin,
    Run,
    RunOutcome,
    RunStatus,
    Schedule,
    ScheduleKind,
    Session,
    SessionStatus,
    Standing,
    StandingChange,
    StopReason,
    Trigger,
)
from gatewayd.store import MemoryStore, SQLiteStore, Store
from gatewayd.store.base import Publication
from gatewayd.store.pginstances import fence
from gatewayd.store.postgres import PostgresStore
from gatewayd.store.schema import MIGRATIONS, SCHEMA_VERSION
from gatewayd.store.transitions import Expected
from gatewayd.store.values import Due
from gatewayd.views import spec_to_json

from tests import pgserver
from tests.conftest import needs_postgres
from tests.harness import SHARED_STORE_KINDS, STORE_KINDS, new_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@asynccontextmanager
async def _opened(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    needs_postgres(kind)
    s = new_store(kind, tmp_path, FakeClock(T0))
    if isinstance(s, MemoryStore):
        s = MemoryStore()  # its own clock: leases move with real time here
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _opened(request.param, tmp_path) as s:
        yield s


@pytest_asyncio.fixture(params=SHARED_STORE_KINDS)
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store shared across hosts (PostgreSQL)."""
    async with _opened(request.param, tmp_path) as s:
        yield s


def job(job_id: str = "job0000001", name: str = "backup", **kw: object) -> Job:
    fields: dict[str, object] = {
        "id": job_id,
        "name": name,
        "schedule": Schedule(kind=ScheduleKind.EVERY, every_s=60, anchor=T0),
        "payload": ExecPayload(command="true", env=(("A", "1"),)),
        "next_slot": T0 + timedelta(minutes=1),
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def run(
    run_id: str,
    *,
    job_id: str = "job0000001",
    slot: datetime | None = None,
    trigger: Trigger = Trigger.SCHEDULE,
    status: RunStatus = RunStatus.QUEUED,
) -> Run:
    return Run(
        run_id=run_id,
        job_id=job_id,
        job_name="backup",
        trigger=trigger,
        status=status,
        scheduled_for=slot,
        queued_at=T0,
        session_key=f"cron:{job_id}:run:{run_id}",
    )


def ended(status: RunStatus = RunStatus.SUCCEEDED, **kw: object) -> RunOutcome:
    return RunOutcome(status=status, ended_at=T0 + timedelta(seconds=5), **kw)  # type: ignore[arg-type]


class TestJobs:
    """Jobs: unique names, full round trip, deletion keeps history."""

    async def test_round_trip(self, store: Store) -> None:
        """A job reads back equal to what was written, by id and by name."""
        original = job()
        await store.add_job(original)
        assert await store.get_job(original.id) == original
        assert await store.find_job("backup") == original
        assert await store.find_job(original.id) == original
        assert await store.find_job("nope") is None

    async def test_names_are_unique(self, store: Store) -> None:
        """A second job with a taken name is refused, and the first is unchanged."""
        await store.add_job(job())
        with pytest.raises(NameTaken, match="'backup' is taken by job job0000001"):
            await store.add_job(job("job0000002"))
        other = job("job0000002", name="other")
        await store.add_job(other)
        with pytest.raises(NameTaken):
            await store.update_job(dataclasses.replace(other, name="backup"))
        assert [j.name for j in await store.list_jobs()] == ["backup", "other"]

    async def test_add_many_is_all_or_nothing(self, store: Store) -> None:
        await store.add_job(job())
        with pytest.raises(NameTaken):
            await store.add_jobs([job("job0000002", name="fresh"), job("job0000003")])
        assert [j.name for j in await store.list_jobs()] == ["backup"]
        await store.add_jobs([job(f"job000001{n}", name=f"n{n}") for n in range(3)])
        assert len(await store.list_jobs()) == 4

    async def test_count_jobs(self, store: Store) -> None:
        assert await store.count_jobs() == (0, 0)
        await store.add_jobs([job("job0000001"), job("job0000002", name="off", enabled=False)])
        assert await store.count_jobs() == (2, 1)

    async def test_duplicate_id(self, store: Store) -> None:
        await store.add_job(job())
        with pytest.raises(Conflict):
            await store.add_job(job(name="again"))

    async def test_update_and_delete(self, store: Store) -> None:
        """Updates replace the whole job; deleting keeps the job's runs."""
        await store.add_job(job())
        await store.record_runs([run("r1")])
        changed = dataclasses.replace(job(), enabled=False, next_slot=None)
        await store.update_job(changed)
        assert await store.get_job(changed.id) == changed
        assert await store.count_jobs() == (1, 0)
        await store.delete_job(changed.id)
        assert await store.get_job(changed.id) is None
        assert [r.run_id for r in await store.list_runs(changed.id, limit=10)] == ["r1"]
        with pytest.raises(NotFound):
            await store.delete_job(changed.id)
        with pytest.raises(NotFound):
            await store.update_job(changed)

    async def test_delete_idle_job(self, store: Store) -> None:
        """A job with a live run is kept; once its runs have ended, it goes."""
        await store.add_job(job())
        await store.record_runs([run("r1")])
        assert not await store.delete_idle_job("job0000001")
        assert await store.get_job("job0000001") is not None
        await store.finish_run("r1", ended())
        assert await store.delete_idle_job("job0000001")
        assert await store.get_job("job0000001") is None
        assert not await store.delete_idle_job("job0000001"), "gone already"


class TestImportedJobs:
    """Jobs from another scheduler: one per origin, stored with their history at once."""

    async def test_jobs_arrive_with_their_history_in_one_transaction(self, store: Store) -> None:
        """A job and its ended runs are stored together; the origin and the runs' imported
        mark read back; the history lists newest first, in the order it was given."""
        origin = Origin(system="openclaw", id="oc-1")
        imported = job(origin=origin, description="from elsewhere")
        history = [
            dataclasses.replace(
                run(f"run000000000000{n}", status=RunStatus.SUCCEEDED),
                queued_at=T0 + timedelta(minutes=n),
                started_at=T0 + timedelta(minutes=n),
                ended_at=T0 + timedelta(minutes=n, seconds=5),
                duration_ms=5000,
                imported=True,
            )
            for n in range(3)
        ]
        await store.add_jobs([imported], history=history)
        assert await store.get_job(imported.id) == imported
        listed = await store.list_runs(imported.id, limit=10)
        assert [r.run_id for r in listed] == [r.run_id for r in reversed(history)]
        assert listed == list(reversed(history))

    async def test_an_origin_is_imported_once_and_a_clash_adds_nothing(self, store: Store) -> None:
        """I10: a second job of an origin the store has (or of its own batch) is refused,
        naming it, with every other job and run of its batch; a renamed job keeps its
        origin."""
        origin = Origin(system="openclaw", id="oc-1")
        await store.add_jobs([job(origin=origin)])
        with pytest.raises(Conflict, match="oc-1 was imported already"):
            await store.add_jobs(
                [job("job0000002", name="fresh"), job("job0000003", name="again", origin=origin)],
                history=[run("run0000000000009", job_id="job0000002", status=RunStatus.FAILED)],
            )
        assert [j.name for j in await store.list_jobs()] == ["backup"]
        assert await store.list_runs("job0000002", limit=10) == []
        twice = Origin(system="openclaw", id="oc-2")
        with pytest.raises(Conflict, match="oc-2 was imported already"):
            await store.add_jobs(
                [job("job0000004", name="a", origin=twice), job("job0000005", origin=twice)]
            )
        assert [j.name for j in await store.list_jobs()] == ["backup"]
        renamed = dataclasses.replace(job(origin=origin), name="renamed")
        await store.update_job(renamed)
        assert (await store.get_job("job0000001")) == renamed


class TestRuns:
    """Runs: slots claimed once, transitions guarded, exactly one ending."""

    async def test_record_runs_and_advance_is_atomic(self, store: Store) -> None:
        """I7: runs and the job's next slot are written together, or not at all."""
        await store.add_job(job())
        slot = T0 + timedelta(minutes=1)
        await store.record_runs(
            [run("r1", slot=slot)], advance_job="job0000001", next_slot=slot + timedelta(minutes=1)
        )
        stored = await store.get_job("job0000001")
        assert stored is not None and stored.next_slot == slot + timedelta(minutes=1)
        with pytest.raises(SlotTaken):
            await store.record_runs(
                [run("r2", slot=slot + timedelta(minutes=1)), run("r3", slot=slot)],
                advance_job="job0000001",
                next_slot=slot + timedelta(minutes=5),
            )
        stored = await store.get_job("job0000001")
        assert stored is not None and stored.next_slot == slot + timedelta(minutes=1)
        assert await store.get_run("r2") is None

    async def test_unknown_job_to_advance_writes_nothing(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.record_runs([run("r1")], advance_job="ghost", next_slot=None)
        assert await store.get_run("r1") is None

    async def test_slots_are_per_job_and_retries_reuse_them(self, store: Store) -> None:
        """(job_id, scheduled_for) is unique; other jobs and retries do not clash."""
        slot = T0 + timedelta(minutes=1)
        await store.record_runs([run("r1", slot=slot)])
        await store.record_runs([run("r2", slot=slot, job_id="job0000002")])
        await store.record_runs([run("r3", slot=slot, trigger=Trigger.RETRY)])
        await store.record_runs([run("r4"), run("r5")])
        with pytest.raises(SlotTaken):
            await store.record_runs([run("r6", slot=slot, trigger=Trigger.CATCHUP)])

    async def test_lifecycle(self, store: Store) -> None:
        """queued -> running -> succeeded, with owner, pid and a derived duration."""
        await store.record_runs([run("r1")])
        started = await store.start_run("r1", started_at=T0, owner="inst1", pid=123, pid_start=9)
        assert (started.status, started.owner, started.pid, started.pid_start) == (
            RunStatus.RUNNING,
            "inst1",
            123,
            9,
        )
        done = await store.finish_run("r1", ended(exit_code=0, output_tail="ok\n", summary="fine"))
        assert done.status is RunStatus.SUCCEEDED
        assert done.duration_ms == 5000
        assert await store.get_run("r1") == done

    async def test_exactly_one_ending(self, store: Store) -> None:
        """I2: a second ending is refused and the first is kept."""
        await store.record_runs([run("r1")])
        await store.finish_run(
            "r1",
            ended(
                RunStatus.CANCELLED,
                error_kind=ErrorKind.CANCELLED,
                stop_reason=StopReason.CANCELLED,
            ),
        )
        with pytest.raises(RunAlreadyEnded, match="already ended cancelled"):
            await store.finish_run("r1", ended(RunStatus.SUCCEEDED))
        with pytest.raises(RunAlreadyEnded):
            await store.start_run("r1", started_at=T0, owner="i", pid=None)
        stored = await store.get_run("r1")
        assert stored is not None and stored.status is RunStatus.CANCELLED

    async def test_adoption_has_one_winner(self, store: Store) -> None:
        """A live run changes owner once; a second adopter from the old owner loses."""
        await store.record_runs([run("r1")])
        await store.start_run("r1", started_at=T0, owner="dead", pid=5)
        adopted = await store.adopt_run("r1", from_owner="dead", to_owner="new")
        assert (adopted.owner, adopted.status) == ("new", RunStatus.RUNNING)
        with pytest.raises(Conflict, match="owned by instance new, not dead"):
            await store.adopt_run("r1", from_owner="dead", to_owner="other")
        await store.finish_run("r1", ended())
        with pytest.raises(RunAlreadyEnded):
            await store.adopt_run("r1", from_owner="new", to_owner="other")
        stored = await store.get_run("r1")
        assert stored is not None and stored.owner == "new"

    async def test_pruning_keeps_live_runs_and_the_newest(self, store: Store) -> None:
        """Retention deletes old and surplus ended runs, never live ones."""
        old = T0 - timedelta(days=40)
        await store.record_runs(
            [
                dataclasses.replace(run(f"a{i}"), queued_at=old, status=RunStatus.SKIPPED)
                for i in range(2)
            ]
            + [dataclasses.replace(run("a-live"), queued_at=old)]
            + [run(f"b{i}", status=RunStatus.SKIPPED) for i in range(5)]
        )
        await store.publish(
            Publication(
                sessions=(Session(key="cron:job0000001:run:b0", session_id="s", run_id="b0"),)
            )
        )
        await store.publish(
            Publication(
                sessions=(Session(key="cron:job0000001:run:b4", session_id="t", run_id="b4"),)
            )
        )
        pruned = await store.prune_runs(keep_per_job=3, queued_before=T0 - timedelta(days=30))
        assert await store.get_session("cron:job0000001:run:b0") is None, "its session went"
        assert await store.get_session("cron:job0000001:run:b4") is not None
        assert sorted(r.run_id for r in pruned) == ["a0", "a1", "b0", "b1"]
        left = [r.run_id for r in await store.list_runs("job0000001", limit=100)]
        assert left == ["b4", "b3", "b2", "a-live"]

    async def test_unknown_run(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.start_run("ghost", started_at=T0, owner="i", pid=None)
        with pytest.raises(NotFound):
            await store.finish_run("ghost", ended())
        assert await store.get_run("ghost") is None

    async def test_queries(self, store: Store) -> None:
        """History is newest first; live runs oldest first; latest per job; counts."""
        await store.record_runs([run("r1"), run("r2"), run("r3", job_id="job0000002")])
        await store.start_run("r1", started_at=T0, owner="i", pid=1)
        await store.finish_run("r1", ended())
        await store.record_runs([run("r4", status=RunStatus.SKIPPED)])
        assert [r.run_id for r in await store.list_runs("job0000001", limit=10)] == [
            "r4",
            "r2",
            "r1",
        ]
        assert [r.run_id for r in await store.list_runs("job0000001", limit=1)] == ["r4"]
        assert [r.run_id for r in await store.live_runs()] == ["r2", "r3"]
        assert [r.run_id for r in await store.live_runs("job0000002")] == ["r3"]
        latest = await store.latest_runs()
        assert {k: v.run_id for k, v in latest.items()} == {
            "job0000001": "r4",
            "job0000002": "r3",
        }
        assert {k: v.run_id for k, v in (await store.latest_runs(["job0000002"])).items()} == {
            "job0000002": "r3"
        }
        previous = await store.previous_started_run("job0000001", "r4")
        assert previous is not None and previous.run_id == "r1"
        assert await store.previous_started_run("job0000001", "r1") is None
        counts = await store.count_runs()
        assert counts.total == 4
        assert counts.get(RunStatus.QUEUED) == 2
        assert counts.get(RunStatus.SUCCEEDED) == 1


class TestPages:
    """Lists come in pages that follow one order, so that a reader can go through all."""

    async def test_jobs_by_name_after_a_cursor(self, store: Store) -> None:
        for n in range(5):
            await store.add_job(job(f"job000000{n}", name=f"n{n}", enabled=n != 2))
        page = await store.list_jobs(limit=2)
        assert [j.name for j in page] == ["n0", "n1"]
        assert [j.name for j in await store.list_jobs(after="n1", limit=2)] == ["n2", "n3"]
        assert [j.name for j in await store.list_jobs(after="n3")] == ["n4"]
        enabled = await store.list_jobs(enabled_only=True, after="n1", limit=2)
        assert [j.name for j in enabled] == ["n3", "n4"]

    async def test_runs_older_than_a_cursor(self, store: Store) -> None:
        await store.record_runs([run(f"r{n}") for n in range(5)])
        assert [r.run_id for r in await store.list_runs("job0000001", limit=2)] == ["r4", "r3"]
        older = await store.list_runs("job0000001", limit=2, before="r3")
        assert [r.run_id for r in older] == ["r2", "r1"]
        with pytest.raises(NotFound):
            await store.list_runs("job0000001", limit=2, before="nope")

    async def test_sessions_after_a_cursor(self, store: Store) -> None:
        """Newest start first, ties by key (descending), the unstarted last: every row
        once, whatever the page size."""
        rows = [
            Session(key="a", session_id="1", started_at=T0),
            Session(key="b", session_id="2", started_at=T0 + timedelta(seconds=1)),
            Session(key="c", session_id="3", started_at=T0 + timedelta(seconds=1)),
            Session(key="d", session_id="4", started_at=T0 + timedelta(seconds=2)),
        ]
        await store.publish(Publication(sessions=tuple(rows)))
        ending = Session(key="z", session_id="5", ended_at=T0, status=SessionStatus.DONE)
        await store.publish(Publication(sessions=(ending,)))
        whole = [s.key for s in await store.list_sessions(limit=10)]
        assert whole == ["d", "c", "b", "a", "z"]
        for size in (1, 2, 3):
            seen: list[str] = []
            page = await store.list_sessions(limit=size)
            while page:
                seen += [s.key for s in page]
                page = await store.list_sessions(limit=size, before=page[-1].key)
            assert seen == whole
        with pytest.raises(NotFound):
            await store.list_sessions(limit=1, before="nope")


class TestSessionsAndEvents:
    """Sessions are upserted by key; events get strictly increasing, never reused seqs."""

    async def test_sessions(self, store: Store) -> None:
        main = Session(key="main", session_id="s-main", started_at=T0)
        iso = Session(
            key="cron:j:run:r",
            session_id="s1",
            job_id="j",
            run_id="r",
            started_at=T0 + timedelta(seconds=1),
        )
        await store.publish(Publication(sessions=(main,)))
        await store.publish(Publication(sessions=(iso,)))
        done = dataclasses.replace(
            iso,
            status=SessionStatus.TIMED_OUT,
            ended_at=T0 + timedelta(seconds=3),
            runtime_ms=2000,
            error="job execution timed out",
            error_kind=ErrorKind.TIMEOUT,
            stop_reason=StopReason.TIMEOUT,
        )
        await store.publish(
            Publication(sessions=(dataclasses.replace(done, started_at=None, runtime_ms=None),))
        )
        assert await store.get_session("cron:j:run:r") == done
        assert await store.get_session("nope") is None
        assert [s.key for s in await store.list_sessions(limit=10)] == ["cron:j:run:r", "main"]
        assert [s.key for s in await store.list_sessions(limit=1)] == ["cron:j:run:r"]
        await store.publish(
            Publication(sessions=(dataclasses.replace(done, key="never-started", started_at=None),))
        )
        orphan = await store.get_session("never-started")
        assert orphan is not None and (orphan.started_at, orphan.runtime_ms) == (None, None)

    async def test_a_start_and_its_ending_together_make_one_ended_row(self, store: Store) -> None:
        """A session started and ended in one publication is stored ended, with its start."""
        start = Session(key="main", session_id="s", started_at=T0)
        end = Session(
            key="main",
            session_id="s",
            status=SessionStatus.DONE,
            ended_at=T0 + timedelta(milliseconds=1500),
            stop_reason=StopReason.COMPLETED,
        )
        await store.publish(Publication(sessions=(start, end)))
        assert await store.get_session("main") == dataclasses.replace(
            end, started_at=T0, runtime_ms=1500
        )

    async def test_event_sequence(self, store: Store) -> None:
        """I10: the store numbers events 1, 2, 3… in commit order, and never reuses a seq."""
        assert await store.last_event_seq() == 0
        for n in range(5):
            await store.publish(Publication(events=({"n": n},)))
        assert [e["n"] for e in await store.events_after(2, limit=2)] == [2, 3]
        assert [e["seq"] for e in await store.latest_events(limit=2)] == [4, 5]
        assert await store.prune_events(keep=2) == 3
        assert [e["n"] for e in await store.events_after(0, limit=10)] == [3, 4]
        assert await store.prune_events(keep=0) == 2
        assert await store.last_event_seq() == 5, "pruned seqs are never reused"
        await store.publish(Publication(events=({"n": 5},)))
        assert [e["seq"] for e in await store.events_after(0, limit=10)] == [6]

    async def test_watchers_hear_each_commit_once_in_commit_order(self, store: Store) -> None:
        """I10: what a store object commits is told to its watchers with the seqs it got."""
        heard: list[tuple[int, int]] = []
        store.watch_events(lambda envelopes: heard.extend((e["seq"], e["n"]) for e in envelopes))
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(store.publish, Publication(events=({"n": n}, {"n": n})))
        assert [seq for seq, _ in heard] == list(range(1, 41)), "each once, in commit order"
        assert all(heard[i][1] == heard[i + 1][1] for i in range(0, 40, 2)), "one write, adjacent"
        assert [(e["seq"], e["n"]) for e in await store.events_after(0, limit=50)] == heard


class TestChangesWithTheirEvents:
    """A state change and the events (and session rows) published with it are one transaction."""

    async def test_a_transition_writes_its_events_and_session(self, store: Store) -> None:
        """The run's start, its events and its session row are all there together."""
        await store.record_runs([run("r1")], publication=Publication(events=({"n": 1},)))
        session = Session(key="cron:job0000001:run:r1", session_id="s1", run_id="r1", started_at=T0)
        await store.start_run(
            "r1",
            started_at=T0,
            owner="i",
            pid=None,
            publication=Publication(events=({"n": 2},), sessions=(session,)),
        )
        assert [e["n"] for e in await store.events_after(0, limit=10)] == [1, 2]
        assert await store.get_session(session.key) == session

    async def test_work_over_at_its_start_is_recorded_started_and_ended_at_once(
        self, store: Store
    ) -> None:
        """I2: start_run with an outcome gives the run its start and its one ending together."""
        await store.record_runs([run("r1")])
        done = await store.start_run(
            "r1", started_at=T0, owner="i", pid=None, outcome=ended(exit_code=0)
        )
        assert (done.status, done.started_at, done.duration_ms) == (
            RunStatus.SUCCEEDED,
            T0,
            5000,
        )
        assert await store.get_run("r1") == done
        with pytest.raises(RunAlreadyEnded):
            await store.finish_run("r1", ended(RunStatus.FAILED))

    async def test_a_refused_transition_publishes_nothing(self, store: Store) -> None:
        """I2: a second ending is refused, and its events and session ending are not written."""
        await store.record_runs([run("r1")])
        await store.finish_run("r1", ended(RunStatus.CANCELLED))
        session = Session(key="main", session_id="s", status=SessionStatus.DONE, ended_at=T0)
        with pytest.raises(RunAlreadyEnded):
            await store.finish_run(
                "r1",
                ended(),
                publication=Publication(events=({"n": 1},), sessions=(session,)),
            )
        assert await store.events_after(0, limit=10) == []
        assert await store.get_session("main") is None
        assert await store.last_event_seq() == 0


async def until_lapsed(store: Store, instance_id: str, *, grace_s: float = 0.0) -> None:
    """Wait, by the store's clock, until the instance's lease has lapsed ``grace_s`` ago."""
    got = await store.get_instance(instance_id)
    assert got is not None and got.lease_until is not None
    await until_store_time(store, got.lease_until + timedelta(seconds=grace_s))


async def until_store_time(store: Store, deadline: datetime) -> None:
    """Wait until the store's clock, which moves by itself, has passed ``deadline``."""
    with anyio.fail_after(5):
        while await store.now() <= deadline:
            await anyio.sleep(0.01)  # the store's clock moves by itself: a deadline wait


def instance(instance_id: str, **kw: object) -> Instance:
    fields: dict[str, object] = {
        "instance_id": instance_id,
        "pid": 10,
        "host": "h",
        "host_id": "host-a",
        "state_dir": "/state/a",
        "started_at": T0,
    }
    fields.update(kw)
    return Instance(**fields)  # type: ignore[arg-type]


class TestTheStoreDecides:
    """I10: decisions that keep the record true are checked inside the store's transaction."""

    async def test_a_run_decided_on_stale_live_runs_is_refused(self, store: Store) -> None:
        """Admission: a run is recorded only if the job's live runs are what it was decided on."""
        await store.add_job(job())
        await store.record_runs(
            [run("r1", trigger=Trigger.MANUAL)], expected=Expected(live=frozenset())
        )
        with pytest.raises(StaleDecision):
            await store.record_runs(
                [run("r2", trigger=Trigger.MANUAL)],
                expected=Expected(live=frozenset()),
                publication=Publication(events=({"n": 1},)),
            )
        assert await store.get_run("r2") is None
        assert await store.last_event_seq() == 0, "nothing of the refused write is kept"
        await store.record_runs(
            [run("r2", trigger=Trigger.MANUAL)], expected=Expected(live=frozenset({"r1"}))
        )
        assert {r.run_id for r in await store.live_runs("job0000001")} == {"r1", "r2"}

    async def test_advancing_a_slot_is_compare_and_set(self, store: Store) -> None:
        """I7, I10: of two timers that saw one next slot, only the first fires it."""
        first = T0 + timedelta(minutes=1)
        await store.add_job(job(next_slot=first))
        then = first + timedelta(minutes=1)
        await store.record_runs(
            [run("a", slot=first)],
            advance_job="job0000001",
            next_slot=then,
            expected=Expected(next_slot=first),
        )
        with pytest.raises(StaleDecision):
            await store.record_runs(
                [run("b", slot=then)],
                advance_job="job0000001",
                next_slot=then + timedelta(minutes=1),
                expected=Expected(next_slot=first),
            )
        got = await store.get_job("job0000001")
        assert got is not None and got.next_slot == then
        assert await store.get_run("b") is None

    async def test_concurrent_decisions_on_one_view_admit_one(self, store: Store) -> None:
        """I10: of many writers that saw no live run, exactly one records its run."""
        await store.add_job(job())
        won: list[str] = []

        async def admit(n: int) -> None:
            try:
                await store.record_runs(
                    [run(f"r{n}", trigger=Trigger.MANUAL)], expected=Expected(live=frozenset())
                )
            except StaleDecision:
                return
            won.append(f"r{n}")

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(admit, n)
        assert len(won) == 1
        assert [r.run_id for r in await store.live_runs("job0000001")] == won

    async def test_the_main_session_id_is_the_first_one_stored(self, store: Store) -> None:
        """Every instance sharing the store gets the same main session id."""
        assert await store.main_session_id("first") == "first"
        assert await store.main_session_id("second") == "first"


SLOT = T0 + timedelta(minutes=1)


def due(job_id: str = "job0000001", slot: datetime | None = SLOT) -> Due:
    return Due(job_id=job_id, next_slot=slot)


async def fire(store: Store, by: str, run_id: str, *, slot: datetime = SLOT) -> None:
    """Record ``by``'s run for ``slot``, advancing the job one minute, under its claim."""
    await store.record_runs(
        [run(run_id, slot=slot)],
        advance_job="job0000001",
        next_slot=slot + timedelta(minutes=1),
        expected=Expected(next_slot=slot, claim=by),
    )


class TestDueClaims:
    """I7, I10: instances share the due slots by claims; only a claim's holder fires its slot."""

    async def test_the_holder_of_a_claim_records_its_slot(self, store: Store) -> None:
        """Every store: a job claimed by an instance is its to fire."""
        await store.add_job(job())
        claims = await store.claim_due([due()], by="a", hold_s=60)
        assert claims.mine == ("job0000001",)
        await fire(store, "a", "r1")
        got = await store.get_job("job0000001")
        assert got is not None and got.next_slot == SLOT + timedelta(minutes=1)

    async def test_a_held_claim_is_not_given_twice(self, shared: Store) -> None:
        """A job another instance holds is not claimed; the claim says when it lapses,
        and the other's runs for the slot are refused, none of them kept."""
        await shared.add_job(job())
        assert (await shared.claim_due([due()], by="a", hold_s=60)).mine == ("job0000001",)
        claims = await shared.claim_due([due()], by="b", hold_s=60)
        assert claims.mine == ()
        [(job_id, lapses_in_s)] = claims.held
        assert job_id == "job0000001" and 55 < lapses_in_s <= 60
        with pytest.raises(ClaimLost):
            await fire(shared, "b", "r-b")
        assert await shared.get_run("r-b") is None
        await fire(shared, "a", "r-a")

    async def test_recording_the_slot_ends_the_claim(self, shared: Store) -> None:
        """Once its holder records the slot, the next slot is free to claim; a claim on
        the slot seen before reports it moved, with the job's new timing."""
        await shared.add_job(job())
        await shared.claim_due([due()], by="a", hold_s=60)
        await fire(shared, "a", "r1")
        stale = await shared.claim_due([due()], by="b", hold_s=60)
        assert stale.mine == () and [t.next_slot for t in stale.moved] == [
            SLOT + timedelta(minutes=1)
        ]
        fresh = await shared.claim_due([due(slot=SLOT + timedelta(minutes=1))], by="b", hold_s=60)
        assert fresh.mine == ("job0000001",)

    async def test_a_lapsed_claim_is_claimed_again(self, shared: Store) -> None:
        """A holder that died leaves its claim to lapse, by the store's clock; then another
        claims the slot, and the late holder's runs are refused."""
        await shared.add_job(job())
        await shared.claim_due([due()], by="a", hold_s=0.05)
        held = await shared.claim_due([due()], by="b", hold_s=60)
        [(_, lapses_in_s)] = held.held
        await until_store_time(shared, await shared.now() + timedelta(seconds=lapses_in_s))
        assert (await shared.claim_due([due()], by="b", hold_s=60)).mine == ("job0000001",)
        with pytest.raises(ClaimLost):
            await fire(shared, "a", "r-a")
        await fire(shared, "b", "r-b")

    async def test_an_edit_ends_the_claim_and_a_deleted_job_is_gone(self, shared: Store) -> None:
        """An edited job's claim is void (its slot may have moved); a deleted job is named."""
        await shared.add_job(job())
        await shared.claim_due([due()], by="a", hold_s=60)
        await shared.update_job(job(name="renamed"))
        assert (await shared.claim_due([due()], by="b", hold_s=60)).mine == ("job0000001",)
        await shared.delete_job("job0000001")
        assert (await shared.claim_due([due()], by="b", hold_s=60)).gone == ("job0000001",)

    async def test_a_disabled_job_is_not_claimed(self, shared: Store) -> None:
        """A disabled job is timed again (it will not fire), not claimed."""
        await shared.add_job(job(enabled=False))
        claims = await shared.claim_due([due()], by="a", hold_s=60)
        assert claims.mine == () and [t.enabled for t in claims.moved] == [False]

    async def test_concurrent_claims_share_the_jobs(self, shared: Store) -> None:
        """Instances shared the same due jobs at once get disjoint shares that cover
        them all: each job is claimed once, none waits on another's claim."""
        ids = [f"job{n:07d}" for n in range(60)]
        await shared.add_jobs([job(job_id, name=job_id) for job_id in ids])
        got: dict[str, tuple[str, ...]] = {}

        async def claim(by: str) -> None:
            claims = await shared.claim_due([due(i) for i in ids], by=by, hold_s=60)
            got[by] = claims.mine

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(claim, f"i{n}")
        shares = [set(mine) for mine in got.values()]
        assert sum(len(s) for s in shares) == len(ids), "no job claimed twice"
        assert set().union(*shares) == set(ids), "none left unclaimed"


@asynccontextmanager
async def sibling(store: Store) -> AsyncIterator[Store]:
    """Another store object on the same store, open, as another instance would have it."""
    if isinstance(store, SQLiteStore):
        other: Store = SQLiteStore(store.path)
    elif isinstance(store, PostgresStore):
        other = PostgresStore(store.location)
    else:
        yield store  # a memory store is shared by its instances as one object
        return
    await other.open()
    try:
        yield other
    finally:
        await other.close()


class TestSharedLocks:
    """I10: work of several transactions that no two instances may do at once is
    done under a lock the store's instances share."""

    async def test_a_second_holder_waits_for_the_first(self, store: Store) -> None:
        """The second instance enters only once the first has left."""
        steps: list[str] = []
        second_in = anyio.Event()
        async with sibling(store) as other:

            async def second() -> None:
                async with other.hold_lock("config-jobs", wait_s=5):
                    steps.append("second in")
                    second_in.set()

            async with anyio.create_task_group() as tg:
                async with store.hold_lock("config-jobs", wait_s=5):
                    steps.append("first in")
                    tg.start_soon(second)
                    with anyio.move_on_after(0.3):  # a bounded look: it must not enter
                        await second_in.wait()
                    steps.append("first out")
                with anyio.fail_after(5):
                    await second_in.wait()
        assert steps == ["first in", "first out", "second in"]

    async def test_a_waiter_gives_up_after_its_wait_and_holds_nothing(self, store: Store) -> None:
        """A wait past ``wait_s`` is LockBusy; the waiter that gave up never holds the lock."""
        async with sibling(store) as other:
            async with store.hold_lock("config-jobs", wait_s=5):
                with pytest.raises(LockBusy):
                    async with other.hold_lock("config-jobs", wait_s=0.1):
                        pytest.fail("entered a held lock")
            with anyio.fail_after(5):
                async with other.hold_lock("config-jobs", wait_s=5):
                    pass
            async with (
                store.hold_lock("other-lock", wait_s=0.1),
                other.hold_lock("another-lock", wait_s=0.1),
            ):
                pass


class TestInstances:
    """I4, I10: ownership is a lease judged by the store's clock; a takeover has one winner."""

    async def test_a_taken_over_instance_s_late_writes_are_refused(self, store: Store) -> None:
        """I10: once taken over, an instance's writes about its runs (a record, a start,
        an ending, an adoption) are refused with LeaseLost, and none of them is kept;
        its successor claims the run and settles it."""
        await store.register_instance(instance("a"), lease_s=0.05)
        await store.register_instance(instance("b"), lease_s=60)
        await store.add_job(job())
        mine = dataclasses.replace(run("r1"), owner="a")
        await store.record_runs([mine])
        await until_lapsed(store, "a")
        assert await store.take_over("a", by="b")
        with pytest.raises(LeaseLost):
            await store.start_run("r1", started_at=T0, owner="a", pid=1)
        with pytest.raises(LeaseLost):
            await store.record_runs([dataclasses.replace(run("r2"), owner="a")])
        with pytest.raises(LeaseLost):
            await store.finish_run("r1", ended())
        with pytest.raises(LeaseLost):
            await store.adopt_run("r1", from_owner="a", to_owner="a")
        assert await store.get_run("r2") is None
        kept = await store.get_run("r1")
        assert kept is not None and kept.status is RunStatus.QUEUED and kept.owner == "a"
        claimed = await store.adopt_run("r1", from_owner="a", to_owner="b")
        settled = await store.finish_run(claimed.run_id, ended(RunStatus.INTERRUPTED))
        assert settled.status is RunStatus.INTERRUPTED and settled.owner == "b"

    async def test_a_renewal_never_waits_for_the_runs_writes(self, shared: Store) -> None:
        """I4, I10: a lease is renewed while a write about the instance's runs holds its
        fence (under a steady stream of such writes, a renewal that waited for them
        let the lease lapse); a take-over waits for that write to land."""
        assert isinstance(shared, PostgresStore)
        await shared.register_instance(instance("a"), lease_s=0.2)
        await shared.register_instance(instance("b"), lease_s=60)
        writer = await psycopg.AsyncConnection.connect(pgserver.URL)
        try:
            await writer.execute(f"SET search_path TO {shared.location.schema}")
            await fence(writer, {"a"})  # a write of a's in flight, not committed yet
            with anyio.fail_after(2):
                assert await shared.renew_lease("a", lease_s=0.2)
            await until_lapsed(shared, "a")
            taken: list[bool] = []
            done = anyio.Event()

            async def take_over() -> None:
                taken.append(await shared.take_over("a", by="b"))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(take_over)
                with anyio.move_on_after(0.3):  # a bounded look: it must wait
                    await done.wait()
                assert taken == [], "the take-over did not wait for the write in flight"
                await writer.commit()
            assert taken == [True]
        finally:
            await writer.close()

    async def test_registration_and_renewal_set_the_lease_by_the_store_clock(
        self, store: Store
    ) -> None:
        before = await store.now()
        got = await store.register_instance(instance("i1"), lease_s=30)
        assert got.state is InstanceState.LIVE and got.heartbeat_at is not None
        assert got.lease_until is not None and got.lease_until >= before + timedelta(seconds=30)
        assert got.host_id == "host-a" and got.state_dir == "/state/a"
        assert await store.renew_lease("i1", lease_s=60)
        renewed = await store.get_instance("i1")
        assert renewed is not None and renewed.lease_until is not None
        assert renewed.lease_until > got.lease_until
        assert await store.get_instance("i2") is None
        with pytest.raises(Conflict):
            await store.register_instance(instance("i1"), lease_s=30)

    async def test_a_live_lease_cannot_be_taken_over(self, store: Store) -> None:
        await store.register_instance(instance("i1"), lease_s=30)
        assert not await store.take_over("i1", by="i2")
        got = await store.get_instance("i1")
        assert got is not None and got.state is InstanceState.LIVE

    async def test_a_lapsed_lease_is_taken_over_by_exactly_one(self, store: Store) -> None:
        await store.register_instance(instance("i1"), lease_s=0.05)
        await until_lapsed(store, "i1")
        results: list[bool] = [False] * 10

        async def take(n: int) -> None:
            results[n] = await store.take_over("i1", by=f"taker{n}")

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(take, n)
        assert results.count(True) == 1
        got = await store.get_instance("i1")
        assert got is not None and got.state is InstanceState.GONE
        assert got.taken_by == f"taker{results.index(True)}"
        assert not await store.renew_lease("i1", lease_s=30), "a taken instance owns nothing"

    async def test_grace_is_counted_from_the_lapse(self, store: Store) -> None:
        await store.register_instance(instance("i1"), lease_s=0.01)
        await until_lapsed(store, "i1")
        assert not await store.take_over("i1", by="i2", grace_s=60)
        assert await store.take_over("i1", by="i2", grace_s=0.05) or await store.take_over(
            "i1", by="i2", grace_s=0.0
        )

    async def test_a_successor_that_proves_death_needs_no_lapse(self, store: Store) -> None:
        await store.register_instance(instance("i1"), lease_s=30)
        assert await store.take_over("i1", by="i2", proven_dead=True)

    async def test_a_stopped_instance_is_not_live_and_keeps_its_record(self, store: Store) -> None:
        await store.register_instance(instance("i1"), lease_s=30)
        await store.stop_instance("i1")
        got = await store.get_instance("i1")
        assert got is not None and got.state is InstanceState.STOPPED
        assert got.lease_until is not None and got.lease_until <= await store.now()
        assert not await store.renew_lease("i1", lease_s=30)
        assert [i.instance_id for i in await store.instances()] == ["i1"]


class TestCancelRequests:
    """A stop asked of another instance's run is durable until its owner carries it out."""

    async def test_a_request_is_kept_for_the_owner_and_the_first_reason_stays(
        self, store: Store
    ) -> None:
        await store.record_runs([run("r1"), run("r2", trigger=Trigger.MANUAL)])
        await store.start_run("r1", started_at=T0, owner="a", pid=None)
        await store.start_run("r2", started_at=T0, owner="b", pid=None)
        asked = await store.request_cancel("r1", StopReason.CANCELLED)
        assert asked.cancel_requested is StopReason.CANCELLED
        again = await store.request_cancel("r1", StopReason.TIMEOUT)
        assert again.cancel_requested is StopReason.CANCELLED
        assert [r.run_id for r in await store.cancel_requests("a")] == ["r1"]
        assert await store.cancel_requests("b") == []
        await store.finish_run("r1", ended(RunStatus.CANCELLED))
        assert await store.cancel_requests("a") == [], "carried out: no longer asked"
        with pytest.raises(RunAlreadyEnded):
            await store.request_cancel("r1", StopReason.CANCELLED)
        with pytest.raises(NotFound):
            await store.request_cancel("nope", StopReason.CANCELLED)


class TestSQLiteFile:
    """The SQLite store itself: durable settings, migrations, refusing bad files."""

    async def test_wal_and_full_sync(self, tmp_path: Path) -> None:
        """The file is in WAL mode with synchronous=FULL and the current schema version."""
        path = tmp_path / "g.db"
        store = SQLiteStore(path)
        await store.open()
        await store.add_job(job())
        await store.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    async def test_survives_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "g.db"
        store = SQLiteStore(path)
        await store.open()
        await store.add_job(job())
        await store.record_runs([run("r1")])
        await store.close()
        again = SQLiteStore(path)
        await again.open()
        assert await again.get_job("job0000001") == job()
        assert (await again.live_runs())[0].run_id == "r1"
        await again.close()

    async def test_garbage_file_is_refused_and_kept(self, tmp_path: Path) -> None:
        """A corrupt store gets a clear error, and the file is not changed."""
        path = tmp_path / "g.db"
        path.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StoreCorrupt, match="damaged or is not a gatewayd store"):
            await SQLiteStore(path).open()
        assert path.read_bytes() == b"this is not sqlite" * 100

    async def test_foreign_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "g.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE mine (x)")
        conn.commit()
        conn.close()
        with pytest.raises(StoreCorrupt, match="not a gatewayd store"):
            await SQLiteStore(path).open()

    async def test_migrates_a_version_1_store(self, tmp_path: Path) -> None:
        """A store written by schema version 1 is migrated forward and keeps its jobs and runs."""
        path = tmp_path / "g.db"
        conn = sqlite3.connect(path)
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (run_id, job_id, job_name, trigger, status, queued_at, "
            "session_key, attempt) VALUES ('r1', 'j', 'n', 'manual', 'succeeded', 0, 's', 1)"
        )
        on, off = job(), job("job0000002", "off", enabled=False)
        for old in (on, off):
            conn.execute(
                "INSERT INTO jobs (id, name, source, spec, next_slot, created_at, updated_at) "
                "VALUES (?, ?, 'api', ?, NULL, 0, 0)",
                (old.id, old.name, orjson.dumps(spec_to_json(old))),
            )
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
        store = SQLiteStore(path)
        await store.open()
        got = await store.get_run("r1")
        assert got is not None and got.pid_start is None
        assert await store.count_jobs() == (2, 1), "v4 reads `enabled` out of each spec"
        migrated = await store.get_job(off.id)
        assert migrated is not None and not migrated.enabled
        await store.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    async def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "g.db"
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        with pytest.raises(StoreError, match="schema version 99, newer"):
            await SQLiteStore(path).open()


def alert(key: str = "failure:r1", sink: str = "ops", **kw: object) -> Alert:
    fields: dict[str, object] = {
        "alert_id": f"{key}@{sink}",
        "key": key,
        "sink": sink,
        "reason": AlertReason.FAILURE,
        "job_id": "job0000001",
        "job_name": "backup",
        "run_ids": ("r1",),
        "streak": 1,
        "message": "m",
        "raised_at": T0,
        "host": "h",
        "instance": "i",
        "next_attempt_at": T0,
    }
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


class TestAlerts:
    """Alerts are stored before they are delivered, once per fact, with every attempt."""

    async def test_an_alert_raised_again_is_stored_once(self, store: Store) -> None:
        """Raising an alert again (after a restart, by another instance) stores nothing."""
        assert await store.record_alerts([alert(), alert(sink="pager")]) == [
            alert(),
            alert(sink="pager"),
        ]
        assert await store.record_alerts([alert(message="again")]) == []
        [stored] = [
            a for a in await store.list_alerts(job_id="job0000001", limit=10) if a.sink == "ops"
        ]
        assert stored == alert()

    async def test_a_taken_alert_is_held_from_the_others_until_its_hold_passes(
        self, store: Store
    ) -> None:
        """Taking a due alert holds it: no one takes it again until ``now + hold``, when
        anyone may (its taker died); one not yet due is not taken."""
        await store.record_alerts([alert(), alert(key="later", next_attempt_at=T0 + HOUR)])
        async with sibling(store) as other:
            [taken] = await store.take_alerts(now=T0, hold_s=60, limit=10)
            assert taken.alert_id == alert().alert_id
            assert taken.next_attempt_at == T0 + timedelta(seconds=60)
            assert (
                await other.take_alerts(now=T0 + timedelta(seconds=59), hold_s=60, limit=10) == []
            )
            again = await other.take_alerts(now=T0 + timedelta(seconds=60), hold_s=60, limit=10)
        assert [a.alert_id for a in again] == [alert().alert_id]
        assert await store.next_alert_at() == T0 + timedelta(seconds=120)

    async def test_each_attempt_is_recorded_once_and_a_settled_alert_is_done(
        self, store: Store
    ) -> None:
        """An attempt is written only over the state it follows (one attempt fewer, still
        pending); a delivered alert is never taken again."""
        await store.record_alerts([alert()])
        [taken] = await store.take_alerts(now=T0, hold_s=60, limit=10)
        failed = dataclasses.replace(
            taken,
            attempts=(AlertAttempt(number=1, at=T0, duration_ms=5, error="HTTP 500"),),
            next_attempt_at=T0 + timedelta(seconds=5),
        )
        assert await store.record_attempt(failed)
        assert not await store.record_attempt(failed)  # the same attempt, twice
        delivered = dataclasses.replace(
            failed,
            attempts=(*failed.attempts, AlertAttempt(number=2, at=T0, duration_ms=3)),
            state=AlertState.DELIVERED,
            delivered_at=T0,
            next_attempt_at=None,
        )
        assert await store.record_attempt(delivered)
        [stored] = await store.list_alerts(job_id=None, limit=10)
        assert stored == delivered
        assert await store.take_alerts(now=T0 + HOUR, hold_s=60, limit=10) == []
        assert await store.next_alert_at() is None

    async def test_the_latest_alert_of_a_job_by_reason(self, store: Store) -> None:
        await store.record_alerts(
            [
                alert(key="failure:r1"),
                alert(key="recovery:r2", reason=AlertReason.RECOVERY, raised_at=T0 + HOUR),
                alert(key="missed:r3", reason=AlertReason.MISSED, raised_at=T0 + 2 * HOUR),
            ]
        )
        latest = await store.latest_alert("job0000001", [AlertReason.FAILURE, AlertReason.RECOVERY])
        assert latest is not None and latest.key == "recovery:r2"
        assert await store.latest_alert("other", [AlertReason.FAILURE]) is None
        keys = [a.key for a in await store.list_alerts(job_id="job0000001", limit=2)]
        assert keys == ["missed:r3", "recovery:r2"]

    async def test_a_jobs_standing_and_alert_policy_are_kept(self, store: Store) -> None:
        """When and by whom a job was disabled or paused, and its alert policy, survive
        the store (so that cron why and the pause outlive a restart)."""
        kept = job(
            alerts=AlertPolicy(
                sinks=("ops",), after=3, cooldown_s=60.0, expect_success_within_s=86400.0
            ),
            pause_after=4,
            standing=(
                Standing(change=StandingChange.DISABLED, at=T0, by=JobSource.API),
                Standing(change=StandingChange.ENABLED, at=T0 + HOUR, by=JobSource.CONFIG),
                Standing(change=StandingChange.PAUSED, at=T0 + 2 * HOUR, failures=4, run_id="r9"),
            ),
        )
        await store.add_job(kept)
        got = await store.get_job(kept.id)
        assert got == kept
        assert got is not None and got.paused is not None and got.paused.failures == 4

    async def test_the_latest_run_with_a_status(self, store: Store) -> None:
        await store.add_job(job())
        await store.record_runs([run("r1"), run("r2", slot=SLOT + HOUR)])
        await store.start_run("r1", started_at=T0, owner="o", pid=None)
        await store.finish_run("r1", ended())
        found = await store.latest_run_with("job0000001", RunStatus.SUCCEEDED)
        assert found is not None and found.run_id == "r1"
        assert await store.latest_run_with("job0000001", RunStatus.FAILED) is None


HOUR = timedelta(hours=1)
