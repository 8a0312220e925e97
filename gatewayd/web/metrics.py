"""The Prometheus metrics of one instance, in the text format.

This instance's runs are counted as it records their endings (so in a
cluster each instance exports its own): ``gatewayd_runs_total``, the run
durations and the firing lag (a scheduled run's start minus its slot). The
gauges of jobs and alerts come from the store at each scrape, so every
instance shows the cluster's jobs alike. Jobs are labelled by name, never by
run id, so that label sets stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd import __version__
from gatewayd.api.values import Identity
from gatewayd.model import Job, Run, RunStatus, Trigger
from gatewayd.planning import next_run_at
from gatewayd.store.base import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Snapshot(Collector):
    """The gauges read from the store for one scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class Metrics:
    """The registry of one instance; :meth:`render` answers a scrape."""

    def __init__(self, *, store: Store, identity: Identity, active: ActiveRuns) -> None:
        self._store = store
        self._identity = identity
        self._active = active
        self.registry = CollectorRegistry(auto_describe=False)
        self._runs = Counter(
            "gatewayd_runs",
            "Runs this instance recorded ended, by job, status and trigger.",
            ["job", "status", "trigger"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "gatewayd_run_duration_seconds",
            "How long this instance's runs ran, by job.",
            ["job"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._lag = Histogram(
            "gatewayd_firing_lag_seconds",
            "A scheduled run's start minus its slot, on this instance.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self._commit = Histogram(
            "gatewayd_store_commit_seconds",
            "How long each of this instance's store commits took.",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "gatewayd_instance_info",
            "This instance: its version, id and host (always 1).",
            ["version", "instance", "host"],
            registry=self.registry,
        )
        info.labels(__version__, identity.instance_id, identity.host).set(1)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self._scrape = anyio.Lock()
        store.time_commits(self._commit.observe)

    async def after_run(self, run: Run, job: Job | None) -> None:
        """A run-finished listener: count the ending, its duration and its firing lag."""
        self._count(run)
        if run.started_at is not None and run.ended_at is not None:
            seconds = (run.ended_at - run.started_at).total_seconds()
            self._duration.labels(run.job_name).observe(max(0.0, seconds))
        if run.trigger is Trigger.SCHEDULE and run.started_at and run.scheduled_for:
            self._lag.observe(max(0.0, (run.started_at - run.scheduled_for).total_seconds()))

    def skipped(self, run: Run, job: Job) -> None:
        """A skipped-slot listener: count it."""
        self._count(run)

    def _count(self, run: Run) -> None:
        self._runs.labels(run.job_name, run.status.value, run.trigger.value).inc()

    async def render(self) -> bytes:
        """The text of a scrape: the counters, and the gauges read from the store now."""
        families = await self._read_gauges()
        async with self._scrape:  # one scrape's gauges at a time in the registry
            self._snapshot.families = families
            return generate_latest(self.registry)

    async def _read_gauges(self) -> list[Metric]:
        next_run = GaugeMetricFamily(
            "gatewayd_job_next_run_timestamp_seconds",
            "When each enabled job next fires (Unix time).",
            labels=["job"],
        )
        last_success = GaugeMetricFamily(
            "gatewayd_job_last_success_timestamp_seconds",
            "When each job's latest successful run ended (Unix time).",
            labels=["job"],
        )
        successes = await self._store.last_successes()
        for job in await self._store.list_jobs():
            due = next_run_at(job)
            if due is not None:
                next_run.add_metric([job.name], due.timestamp())
            ended = successes.get(job.id)
            if ended is not None:
                last_success.add_metric([job.name], ended.timestamp())
        running, queued = await self._active()
        live = []
        for name, text, value in (
            ("gatewayd_running_runs", "Runs of this instance running now.", running),
            ("gatewayd_queued_runs", "Runs of this instance queued now.", queued),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            live.append(gauge)
        alerts = GaugeMetricFamily(
            "gatewayd_alerts_total",
            "Alerts stored, by sink and state (pending, delivered, failed).",
            labels=["sink", "state"],
        )
        counts = await self._store.alert_counts()
        for (sink, state), count in sorted(counts.items()):
            alerts.add_metric([sink, state.value], count)
        return [next_run, last_success, *live, alerts]


class ActiveRuns:
    """This instance's live runs, counted from the store: ``(running, queued)``."""

    def __init__(self, store: Store, instance_id: str) -> None:
        self._store = store
        self._instance_id = instance_id

    async def __call__(self) -> tuple[int, int]:
        mine = [r for r in await self._store.live_runs() if r.owner == self._instance_id]
        running = sum(r.status is RunStatus.RUNNING for r in mine)
        return running, len(mine) - running
