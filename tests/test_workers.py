"""Worker threads: blocking work done off the event loop, answered through it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from gatewayd.store.threads import BatchWriter
from gatewayd.workers import WorkerPool


class TestWorkerPool:
    """A pool's threads each hold their own resource; one thread keeps the order of hand-over."""

    async def test_one_thread_runs_operations_in_order_off_the_loop(self) -> None:
        """Operations queued at once run one by one, in order, on the pool's thread."""
        loop_thread = threading.get_ident()
        done: list[tuple[int, int]] = []
        pool: WorkerPool[list[tuple[int, int]]] = WorkerPool(lambda: done, size=1, name="t")
        pool.start()
        try:

            def op(n: int) -> int:
                done.append((n, threading.get_ident()))
                return n * 2

            results: dict[int, int] = {}

            async def call(n: int) -> None:
                results[n] = await pool.run(lambda _: op(n))

            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(call, n)
        finally:
            await anyio.to_thread.run_sync(pool.stop)
        assert [n for n, _ in done] == sorted(n for n, _ in done)
        assert {thread for _, thread in done} != {loop_thread}
        assert results == {n: n * 2 for n in range(50)}

    async def test_a_failure_reaches_its_caller_and_the_thread_goes_on(self) -> None:
        """An operation's exception is raised to its caller; later operations still run."""
        closed: list[str] = []
        pool: WorkerPool[str] = WorkerPool(
            lambda: "resource", size=2, name="t", close_resource=closed.append
        )
        pool.start()
        try:

            def fail(_: str) -> None:
                raise ValueError("no")

            with pytest.raises(ValueError, match="no"):
                await pool.run(fail)
            assert await pool.run(lambda resource: resource.upper()) == "RESOURCE"
        finally:
            await anyio.to_thread.run_sync(pool.stop)
        assert closed == ["resource", "resource"], "each thread closed its own resource"


class TestBatchWriter:
    """Group commit: operations share a transaction, yet each is all or nothing on its own."""

    async def test_an_operation_that_fails_part_way_leaves_nothing_and_alone(
        self, tmp_path: Path
    ) -> None:
        """A failing operation's own writes are undone; the others in its batch are kept."""
        conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE t (v TEXT)")
        writer = BatchWriter(conn, path=tmp_path / "t.db", name="t")
        writer.start()
        holding, gate = threading.Event(), threading.Event()

        def hold(c: sqlite3.Connection) -> None:
            holding.set()
            gate.wait(5)

        def put(value: str) -> Callable[[sqlite3.Connection], None]:
            def op(c: sqlite3.Connection) -> None:
                c.execute("INSERT INTO t VALUES (?)", (value,))

            return op

        def put_then_fail(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES ('b')")
            raise ValueError("b failed after writing")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run, hold)
                await anyio.to_thread.run_sync(holding.wait, 5)  # the writer is busy with it
                failures: list[Exception] = []

                async def run_b() -> None:
                    try:
                        await writer.run(put_then_fail)
                    except ValueError as exc:
                        failures.append(exc)

                tg.start_soon(writer.run, put("a"))
                tg.start_soon(run_b)
                tg.start_soon(writer.run, put("c"))
                await anyio.lowlevel.checkpoint()
                gate.set()
        finally:
            await anyio.to_thread.run_sync(writer.stop)
        rows = [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
        conn.close()
        assert rows == ["a", "c"]
        assert [str(e) for e in failures] == ["b failed after writing"]
        assert writer.batches == 2, "a, b and c shared a batch"
