"""Worker threads: blocking work done off the event loop, answered through it."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest
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
