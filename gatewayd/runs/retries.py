"""Retries: the next attempt of a run that failed or timed out, after its job's backoff."""

from __future__ import annotations

from datetime import timedelta

import structlog

from gatewayd.clock import Clock
from gatewayd.model import Job, Run, RunStatus
from gatewayd.planning import retry_delay
from gatewayd.runs.admission import Admission

log = structlog.get_logger("gatewayd.runs")

_RETRIED = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


class Retries:
    """Queues retries; the retry is a ``queued`` run with its ``scheduled_for`` its time."""

    def __init__(self, *, admission: Admission, clock: Clock) -> None:
        self._admission = admission
        self._clock = clock

    async def after(self, run: Run, job: Job) -> Run | None:
        """Queue the next attempt of ``run`` if its job's retry policy calls for one."""
        if run.status not in _RETRIED:
            return None
        delay = retry_delay(job.retry, run.attempt)
        if delay is None:
            return None
        not_before = self._clock.now() + timedelta(seconds=delay)
        retry = await self._admission.retry(job, attempt=run.attempt + 1, not_before=not_before)
        log.info("retry queued", run_id=retry.run_id, after=run.run_id, attempt=retry.attempt)
        return retry
