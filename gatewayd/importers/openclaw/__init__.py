"""OpenClaw's cron jobs and their history, read into an import plan.

:func:`read_plan` reads the store under a directory (``~/.openclaw/cron``) in
whichever of its three shapes it finds, and maps every job; it changes
nothing, anywhere. It does blocking I/O: call it on a worker thread.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from gatewayd.importers.openclaw.jobs import plan_job
from gatewayd.importers.openclaw.stores import RawJob, read_store
from gatewayd.importers.plan import History, Plan, PlannedJob

SYSTEM = "openclaw"
HISTORY_TELEMETRY = "history: the model, usage and delivery outcome of each run are not kept"


def _planned(raw: RawJob, *, host_zone: str, alert_sink: str | None, now: datetime) -> PlannedJob:
    job = plan_job(raw.body, raw.state, host_zone=host_zone, alert_sink=alert_sink, now=now)
    left = job.left_behind + ((HISTORY_TELEMETRY,) if raw.history_telemetry else ())
    return replace(job, left_behind=left, history=raw.history)


def read_plan(directory: Path, *, host_zone: str, alert_sink: str | None, now: datetime) -> Plan:
    """What importing the OpenClaw store under ``directory`` would bring.

    ``host_zone`` is the IANA zone a cron schedule without ``tz`` ran in;
    ``alert_sink`` the ``[alerts.NAME]`` that jobs' ``failureAlert`` goes to.
    """
    store = read_store(directory)
    seen: set[str] = set()
    jobs = []
    for raw in store.jobs:
        job = _planned(raw, host_zone=host_zone, alert_sink=alert_sink, now=now)
        if job.origin_id in seen:
            twice = f"the id {job.origin_id} is given twice in OpenClaw's store"
            job = replace(job, spec=None, refusal=twice, history=History())
        seen.add(job.origin_id)
        jobs.append(job)
    return Plan(
        system=SYSTEM,
        store=store.shape.value,
        paths=store.paths,
        jobs=tuple(jobs),
        notes=store.notes,
    )
