"""Waiting for a run's ending, whichever instance records it: heard on the bus, read
from the store."""

from __future__ import annotations

from gatewayd.bus import Bus
from gatewayd.errors import NotFound
from gatewayd.events import RUN, RunFinished
from gatewayd.model import Run
from gatewayd.store.base import Store

_RUN_STREAM = frozenset({RUN})


async def ending_of(run_id: str, *, store: Store, bus: Bus) -> Run:
    """The run once it has its terminal status (wait with a deadline around it).

    ``NotFound`` if there is no such run. The ending of a run another instance
    drives reaches this instance's bus when a hint says so, or at its backstop.
    """
    while True:
        with bus.subscribe(internal=True, streams=_RUN_STREAM) as subscription:
            run = await store.get_run(run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            if run.status.is_terminal:
                return run
            async for envelope in subscription:
                if (
                    envelope.get("run_id") == run_id
                    and envelope.get("stream") == RUN
                    and envelope.get("phase") == RunFinished.phase
                ):
                    break
        # Ended (read it), or this subscription was dropped behind: look again.
