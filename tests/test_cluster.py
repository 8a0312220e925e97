"""Three gateways on one PostgreSQL database, driven as users drive them.

Each test starts three ``gatewayd serve`` processes, each with its own state
directory, on one fresh schema of the test database, and works them through
their sockets and CLIs. The slots recorded are read back from the database
itself. ``GATEWAYD_CLUSTER_SECONDS`` sets how long the exactly-once case runs
(30 s by default). Waits are conditions with deadlines.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gatewayd.errors import LeaseLost
from gatewayd.store.location import StoreLocation
from gatewayd.store.sqlrows import from_us
from gatewayd.testing import DaemonProcess, wait_until

from tests import pgserver
from tests.conftest import needs_postgres

SECONDS = int(os.environ.get("GATEWAYD_CLUSTER_SECONDS", "30"))
LEASE_S = 2.0
CONFIG = """
[gateway]
sweep_interval = "500ms"
kill_grace = "1s"
log_level = "info"
[scheduler]
misfire_grace = "1h"
[cluster]
lease = "2s"
backstop = "500ms"
host_id = "cluster-test-host"
orphan_grace = "30s"
[store]
schema = "{schema}"
"""


@dataclass
class Cluster:
    location: StoreLocation
    members: list[DaemonProcess]

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Read the cluster's schema directly (to check what was recorded)."""
        with psycopg.connect(pgserver.URL, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {self.location.schema}")
            return conn.execute(query, params).fetchall()

    def slots(self, job_name: str) -> list[datetime]:
        rows = self.sql(
            "SELECT scheduled_for FROM runs WHERE job_name = %s AND trigger <> 'retry' "
            "AND scheduled_for IS NOT NULL ORDER BY scheduled_for",
            (job_name,),
        )
        return [from_us(r[0]) for r in rows]  # type: ignore[misc]

    def run(self, run_id: str) -> dict[str, Any]:
        return self.members[0].run_record(run_id)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    needs_postgres("postgresql")
    location = pgserver.fresh_location()
    config = CONFIG.format(schema=location.schema)
    env = {"GATEWAYD_STORE": pgserver.URL}
    with ExitStack() as stack:
        members = []
        for name in ("a", "b", "c"):
            member = DaemonProcess(tmp_path / name, config=config, env=env, files_dir=tmp_path)
            stack.callback(member.close)
            members.append(member.start())
        yield Cluster(location=location, members=members)


def no_slot_twice_none_missing(cluster: Cluster, name: str, *, every_s: float = 1.0) -> int:
    """Each slot of job ``name`` from its first to its last is recorded once; how many."""
    slots = cluster.slots(name)
    assert len(slots) == len(set(slots)), f"a slot of {name} was recorded twice"
    for earlier, later in itertools.pairwise(slots):
        # (the first slot is the job's creation to the microsecond; the next, to the ms)
        assert abs(later - earlier - timedelta(seconds=every_s)) < timedelta(milliseconds=2), (
            f"{name}: no slot recorded between {earlier} and {later}"
        )
    return len(slots)


class TestExactlyOnce:
    def test_twenty_jobs_every_second_on_three_gateways(self, cluster: Cluster) -> None:
        """I7 across instances: 20 jobs every second for 30 s, fired by three timers on
        one database, record every slot once: none twice, none missing."""
        a = cluster.members[0]
        for n in range(20):
            a.add_job("--name", f"tick{n}", "--every", "1s", "--system-event", f"tick {n}")
        begun = datetime.now(UTC)

        def long_enough() -> bool:
            slots = cluster.slots("tick19")
            return bool(slots) and slots[-1] - slots[0] >= timedelta(seconds=SECONDS)

        wait_until(long_enough, timeout=SECONDS + 30, interval=0.5, what=f"{SECONDS}s of slots")
        counts = [no_slot_twice_none_missing(cluster, f"tick{n}") for n in range(20)]
        assert min(counts) >= SECONDS
        owners = {r[0] for r in cluster.sql("SELECT DISTINCT owner FROM runs")}
        assert len(owners) >= 2, "one instance fired every slot: the others never shared"
        assert datetime.now(UTC) - begun < timedelta(seconds=SECONDS + 30)


class TestFailover:
    def test_kill_9_the_others_go_on_and_adopt_its_run(self, cluster: Cluster) -> None:
        """Failover: after kill -9 of an instance, the slots go on (each once), and its
        live run on this host is re-adopted by another instance, never marked lost."""
        a, b, _ = cluster.members
        a.add_job("--name", "beat", "--every", "1s", "--system-event", "beat")
        a.add_job("--name", "long", "--every", "1d", "--shell", "sleep 4")
        run_id = a.call("cron.run", {"job": "long"})["run_id"]
        wait_until(lambda: cluster.run(run_id)["status"] == "running", what="the long run")
        a_id = a.call("gateway.status")["instance_id"]
        killed_at = datetime.now(UTC)
        a.kill()

        def adopted() -> bool:
            run = b.run_record(run_id)
            return bool(run["status"] == "running" and run["owner"] != a_id)

        wait_until(adopted, timeout=LEASE_S + 10, what="another instance to adopt the run")
        ended = wait_until(
            lambda: (r := b.run_record(run_id))["status"] != "running" and r,
            timeout=20,
            what="the adopted run's ending",
        )
        assert ended["status"] == "succeeded", ended
        wait_until(
            lambda: (
                cluster.slots("beat")
                and cluster.slots("beat")[-1] > killed_at + timedelta(seconds=2)
            ),
            timeout=LEASE_S + 10,
            what="slots after the kill",
        )
        no_slot_twice_none_missing(cluster, "beat")

    def test_a_stopped_instance_resumed_past_its_lease_steps_down(self, cluster: Cluster) -> None:
        """A lease lapsed while SIGSTOPped: the others take the instance over; once
        resumed, it writes nothing on its stale claims and steps down, saying so."""
        a, b, _ = cluster.members
        a.add_job("--name", "beat", "--every", "1s", "--system-event", "beat")
        a_id = a.call("gateway.status")["instance_id"]
        a.signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: (
                    cluster.sql("SELECT state FROM instances WHERE instance_id = %s", (a_id,))[0][0]
                    == "gone"
                ),
                timeout=LEASE_S + 10,
                what="the stopped instance to be taken over",
            )
        finally:
            a.signal(signal.SIGCONT)
        assert a.process is not None
        assert a.process.wait(timeout=20) == LeaseLost.exit_code
        assert "lease was taken over" in a.log()
        stale = cluster.sql(
            "SELECT count(*) FROM runs WHERE owner = %s AND status IN ('queued', 'running')",
            (a_id,),
        )
        assert stale[0][0] == 0
        wait_until(lambda: len(cluster.slots("beat")) >= 3, what="slots after the resume")
        no_slot_twice_none_missing(cluster, "beat")
        assert b.call("gateway.status")["instances"] is not None


class TestAcrossInstances:
    def test_a_cancel_from_another_instance_stops_the_run_within_a_second(
        self, cluster: Cluster
    ) -> None:
        """I4 across instances: B cancels a run A executes; A stops it (hinted by NOTIFY)."""
        a, b, _ = cluster.members
        a.add_job("--name", "long", "--every", "1d", "--shell", "sleep 30")
        run_id = a.call("cron.run", {"job": "long"})["run_id"]
        wait_until(lambda: a.run_record(run_id)["status"] == "running", what="the run")
        assert a.run_record(run_id)["owner"] == a.call("gateway.status")["instance_id"]
        asked = datetime.now(UTC)
        result = b.cli("cron", "cancel", run_id, "--json")
        assert result.code == 0, result.stderr
        ended = wait_until(
            lambda: (r := a.run_record(run_id))["status"] != "running" and r,
            timeout=5,
            what="the cancelled run's ending",
        )
        assert ended["status"] == "cancelled"
        assert datetime.now(UTC) - asked < timedelta(seconds=1 + 1 + 1)  # kill_grace + 1 s

    def test_an_edit_from_another_instance_takes_effect_everywhere(self, cluster: Cluster) -> None:
        """A job disabled on B fires nowhere once the change is seen (within 1 s)."""
        a, b, _ = cluster.members
        a.add_job("--name", "beat", "--every", "1s", "--system-event", "beat")
        wait_until(lambda: len(cluster.slots("beat")) >= 2, what="the job's first slots")
        assert b.cli("cron", "disable", "beat").code == 0
        disabled_at = datetime.now(UTC)
        later = wait_until(
            lambda: (
                cluster.slots("beat")[-1] < disabled_at + timedelta(seconds=1)
                and datetime.now(UTC) > disabled_at + timedelta(seconds=3)
            ),
            timeout=10,
            what="three seconds without a slot",
        )
        assert later
        assert cluster.slots("beat")[-1] < disabled_at + timedelta(seconds=1)

    def test_events_follow_on_one_instance_streams_another_instances_runs(
        self, cluster: Cluster
    ) -> None:
        """I8 across instances: `events --follow` on C streams a run of A, in seq order."""
        a, _, c = cluster.members
        a.add_job("--name", "once", "--every", "1d", "--system-event", "hello")
        follower = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "events", "--follow", "--json"],
            env=c.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            run_id = a.call("cron.run", {"job": "once"})["run_id"]
            assert follower.stdout is not None
            seqs: list[int] = []
            for line in lines_of(follower, timeout=15):
                event = json.loads(line)
                if event.get("seq") is not None:
                    seqs.append(event["seq"])
                if event.get("run_id") == run_id and event.get("phase") == "finished":
                    break
            else:
                raise AssertionError("the follower never streamed the run's ending")
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        finally:
            follower.kill()
            follower.wait()
            if follower.stdout is not None:
                follower.stdout.close()

    def test_doctor_on_the_cluster(self, cluster: Cluster, tmp_path: Path) -> None:
        """`doctor --store URL` checks the whole cluster's records from any host."""
        a = cluster.members[0]
        a.add_job("--name", "beat", "--every", "1s", "--system-event", "beat")
        wait_until(lambda: len(cluster.slots("beat")) >= 2, what="some slots")
        config = tmp_path / "doctor.toml"
        config.write_text(f'[store]\nschema = "{cluster.location.schema}"\n')
        result = a.cli("doctor", "--store", pgserver.URL, "--config", str(config))
        assert result.code == 0, result.stdout + result.stderr
        assert "no violation found" in result.stdout


def declaring(*jobs: tuple[str, str]) -> str:
    """Config text declaring jobs ``(name, every)``."""
    return "".join(
        f'[[jobs]]\nname = "{name}"\nevery = "{every}"\nsystem_event = "{name}"\n'
        for name, every in jobs
    )


class TestConfigJobs:
    """Jobs declared in the config are reconciled cluster-wide, by name, one instance at a time."""

    def _member(
        self, tmp_path: Path, location: StoreLocation, name: str, jobs: str
    ) -> DaemonProcess:
        config = CONFIG.format(schema=location.schema) + jobs
        env = {"GATEWAYD_STORE": pgserver.URL}
        return DaemonProcess(tmp_path / name, config=config, env=env, files_dir=tmp_path)

    def _config_jobs(self, location: StoreLocation) -> dict[str, str]:
        with psycopg.connect(pgserver.URL, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {location.schema}")
            rows = conn.execute(
                "SELECT name, spec->'schedule'->>'every_s' FROM jobs WHERE source = 'config'"
            ).fetchall()
        return dict(rows)

    def test_three_instances_started_at_once_declare_each_job_once(self, tmp_path: Path) -> None:
        """Three gateways started together with one config all come up, and each
        declared job exists once: they reconcile in turn, under the store's lock."""
        needs_postgres("postgresql")
        location = pgserver.fresh_location()
        jobs = declaring(*((f"job{n}", "1h") for n in range(20)))
        with ExitStack() as stack:
            members = [self._member(tmp_path, location, name, jobs) for name in "abc"]
            for member in members:
                stack.callback(member.close)
                member.spawn()
            for member in members:
                member.wait_for_message("READY=1", timeout=30, pid=member.pid)
            assert sorted(self._config_jobs(location)) == sorted(f"job{n}" for n in range(20))

    def test_when_files_differ_the_last_to_reconcile_wins(self, tmp_path: Path) -> None:
        """Two instances whose files differ: the one that reconciles last (at its start
        or its reload) sets the cluster's config jobs; the other's are removed or
        changed, until it reloads."""
        needs_postgres("postgresql")
        location = pgserver.fresh_location()
        with ExitStack() as stack:
            a = self._member(tmp_path, location, "a", declaring(("shared", "1m"), ("only-a", "1h")))
            stack.callback(a.close)
            a.start()
            assert self._config_jobs(location) == {"shared": "60.0", "only-a": "3600.0"}
            b = self._member(tmp_path, location, "b", declaring(("shared", "2m"), ("only-b", "1h")))
            stack.callback(b.close)
            b.start()
            assert self._config_jobs(location) == {"shared": "120.0", "only-b": "3600.0"}
            a.signal(signal.SIGHUP)
            wait_until(
                lambda: self._config_jobs(location) == {"shared": "60.0", "only-a": "3600.0"},
                what="a's file reconciled again after its reload",
            )


def lines_of(process: subprocess.Popen[str], *, timeout: float) -> Iterator[str]:
    """``process``'s stdout line by line, until it ends or ``timeout`` passes without one."""
    assert process.stdout is not None
    arrived: queue.Queue[str] = queue.Queue()
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            arrived.put(line)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            yield arrived.get(timeout=timeout)
        except queue.Empty:
            return


def restart_postgres() -> None:
    """Restart the machine's PostgreSQL server (as root, as CI runs; skipped elsewhere)."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if os.geteuid() != 0 or not versions:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class TestServerRestart:
    def test_a_restart_of_postgresql_during_runs_loses_nothing(self, cluster: Cluster) -> None:
        """A fault never drops a record: PostgreSQL restarts while a run goes on; every
        gateway lives on, the run keeps going, its ending is recorded after the
        reconnect, and the slots of the outage are each recorded once."""
        a = cluster.members[0]
        a.add_job("--name", "beat", "--every", "1s", "--system-event", "beat")
        a.add_job("--name", "long", "--every", "1d", "--shell", "sleep 4")
        run_id = a.call("cron.run", {"job": "long"})["run_id"]
        wait_until(lambda: a.run_record(run_id)["status"] == "running", what="the long run")
        restart_postgres()
        ended = wait_until(
            lambda: (r := a.run_record(run_id))["status"] != "running" and r,
            timeout=30,
            what="the run's ending after the restart",
        )
        assert ended["status"] == "succeeded", ended
        for member in cluster.members:
            assert member.process is not None and member.process.poll() is None, member.log()
        restarted = datetime.now(UTC)

        def beats_since() -> bool:
            slots = cluster.slots("beat")
            return bool(slots) and slots[-1] > restarted + timedelta(seconds=2)

        wait_until(beats_since, timeout=20, what="slots after the restart")
        no_slot_twice_none_missing(cluster, "beat")
        assert a.call("gateway.status")["store"]["writable"]
