"""B8: three gateways on one PostgreSQL, beside one on SQLite and APScheduler 4 on PostgreSQL.

Part 1, the load: N one-shot jobs due across a window (10,000 over 20 s: 500
fires per second), once in-process (``system_event``; lag: the recorded start
minus the slot, read from the store) and once exec (the command's own start
minus its slot, as B1 measures it), on

- three ``gatewayd serve`` on one PostgreSQL schema;
- one ``gatewayd serve`` on its embedded SQLite store;
- three APScheduler 4 schedulers (SQLAlchemy data store, psycopg event broker)
  on one PostgreSQL schema, the same schedule as date triggers (run by
  ``benchmarks/ap4_cluster_worker.py`` in ``.venv-ap4``, see ``make bench-cluster``).

Each prints firing lag p50, p99 and max, duplicates (a slot run more than
once) and missing slots (never run), and each member's share.

Part 2, failover: 20 jobs every second on three gateways; an instance is killed
(``kill -9``), and the time is taken from the kill to the moment every job
whose last slot the dead instance fired has fired again elsewhere. Over
``--trials`` trials (the killed instance is restarted between trials).

    .venv/bin/python -m benchmarks.b8_cluster [--jobs N] [--window S] [--trials T]
        [--lease DUR] [--only load|failover] [--skip-apscheduler]
        [--runs both|in-process|exec]

``GATEWAYD_BENCH_POSTGRES`` names the database (default ``postgresql:///test``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from gatewayd.durations import format_time
from gatewayd.paths import DB_NAME
from gatewayd.store.sqlrows import from_us
from gatewayd.testing import DaemonProcess

from benchmarks.b1_firing_lag import COMMAND, lags_from_logs, slots
from benchmarks.b1_firing_lag import CONFIG as B1_CONFIG
from benchmarks.common import (
    AsyncClient,
    lag_summary_line,
    machine,
    summarise,
    summary_line,
    table,
)

URL = os.environ.get("GATEWAYD_BENCH_POSTGRES", "postgresql:///test")
AP4_PYTHON = Path(__file__).resolve().parent.parent / ".venv-ap4" / "bin" / "python"
AP4_WORKER = Path(__file__).resolve().parent / "ap4_cluster_worker.py"
MEMBERS = ("a", "b", "c")
BATCH = 5_000
CONFIG = B1_CONFIG + '[cluster]\nlease = "{lease}"\n'  # B1's, with the lease of the case


@contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A schema of its own on the benchmark database, dropped afterwards."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    try:
        yield schema
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pg_rows(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return conn.execute(query, params).fetchall()


def sqlite_rows(db: Path, query: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


RUNS = (
    "SELECT job_id, scheduled_for, started_at, owner, status FROM runs "
    "WHERE trigger <> 'retry' AND scheduled_for IS NOT NULL"
)


def judge(n: int, rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Duplicates, missing slots and shares, from ``(slot key, owner)`` rows."""
    per_slot = Counter(key for key, _ in rows)
    return {
        "duplicates": sum(count - 1 for count in per_slot.values()),
        "missing": n - len(per_slot),
        "shares": dict(sorted(Counter(owner for _, owner in rows).items())),
    }


# --- gatewayd -----------------------------------------------------------------------


def start_members(
    tmp: Path, names: Sequence[str], *, config: str, env: dict[str, str], stack: ExitStack
) -> list[DaemonProcess]:
    members = []
    for name in names:
        member = DaemonProcess(tmp / name, config=config, env=env, files_dir=tmp, ready_timeout=60)
        stack.callback(member.close)
        members.append(member)
        member.spawn()
    for member in members:
        member.wait_for_message("READY=1", timeout=60, pid=member.pid)
    return members


async def add_one_shots(member: DaemonProcess, times: Sequence[datetime], exec_jobs: bool) -> None:
    payload: dict[str, Any] = (
        {"kind": "exec", "shell": COMMAND} if exec_jobs else {"kind": "system_event", "text": "t"}
    )
    specs = [
        {"name": f"b{i}", "schedule": {"kind": "at", "at": format_time(t)}, "payload": payload}
        for i, t in enumerate(times)
    ]
    client = await AsyncClient.connect(member.socket_path)
    try:
        for first in range(0, len(specs), BATCH):
            await client.call("cron.add_many", {"jobs": specs[first : first + BATCH]})
    finally:
        await client.close()


def wait_ended(n: int, count_ended: Any, deadline: datetime) -> None:
    while datetime.now(UTC) < deadline and count_ended() < n:
        time.sleep(0.5)  # the benchmark looks at the store now and then


def gatewayd_load(n: int, window_s: float, *, exec_jobs: bool, cluster: bool, lease: str) -> Any:
    config = CONFIG.format(lease=lease)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gwb8")))
        if cluster:
            schema = stack.enter_context(fresh_schema("b8gw"))
            env = {"GATEWAYD_STORE": URL}
            config += f'[store]\nschema = "{schema}"\n'
            members = start_members(tmp, MEMBERS, config=config, env=env, stack=stack)

            def rows(query: str) -> list[Any]:
                return pg_rows(schema, query)
        else:
            members = start_members(tmp, ["solo"], config=config, env={}, stack=stack)
            db = members[0].state_dir / DB_NAME

            def rows(query: str) -> list[Any]:
                return sqlite_rows(db, query)

        times = slots(n, window_s, 4.0 + n / 2500)
        asyncio.run(add_one_shots(members[0], times, exec_jobs))
        if datetime.now(UTC) > times[0]:
            raise RuntimeError("adding the jobs took longer than the lead time")
        ended = "SELECT count(*) FROM runs WHERE status NOT IN ('queued', 'running')"
        wait_ended(n, lambda: rows(ended)[0][0], times[-1] + timedelta(seconds=180))
        recorded = rows(RUNS)
        if exec_jobs:
            lags = [lag for m in members for lag in lags_from_logs(m.state_dir / "runs")]
        else:
            lags = [(started - slot) / 1000 for _, slot, started, _, _ in recorded if started]
        for member in members:
            if member.process is not None and member.process.poll() is not None:
                print(f"{member.state_dir.name} exited {member.process.returncode}:")
                print("\n".join(member.log().splitlines()[-15:]), flush=True)
        owners = {
            instance_id: Path(state_dir).name
            for instance_id, state_dir in rows("SELECT instance_id, state_dir FROM instances")
        }
        result = judge(
            n, [((job, slot), owners.get(owner, owner)) for job, slot, _, owner, _ in recorded]
        )
        result["not_ok"] = sum(1 for *_, status in recorded if status != "succeeded")
    return {"lags": lags, **result}


# --- APScheduler 4 ------------------------------------------------------------------


def ap4(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(AP4_PYTHON), str(AP4_WORKER), *args], cwd=AP4_WORKER.parent)


def apscheduler_load(n: int, window_s: float, *, exec_jobs: bool) -> Any:
    mode = "exec" if exec_jobs else "inprocess"
    with ExitStack() as stack:
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ap4b8")))
        schema = stack.enter_context(fresh_schema("b8ap"))
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        adding = time.monotonic()
        first = time.time() + 8.0 + n / 250  # the adds take about 3 ms each
        if ap4("add", URL, schema, str(out), str(n), str(first), str(window_s)).wait() != 0:
            raise RuntimeError("APScheduler 4 could not add the schedules")
        add_s = time.monotonic() - adding
        if time.time() > first:
            raise RuntimeError(f"adding to APScheduler 4 took {add_s:.1f}s, past the lead")
        until = first + window_s + 900
        runners = [ap4("run", URL, schema, str(out), name, str(until), mode) for name in MEMBERS]
        try:
            deadline = datetime.fromtimestamp(until, UTC)
            wait_ended(n, lambda: sum(1 for _ in read_ap4_lines(out)), deadline)
        finally:
            for runner in runners:
                runner.terminate()
            for runner in runners:
                runner.wait()
        lines = list(read_ap4_lines(out))
    lags = [(started - slot) * 1000 for started, _, slot, _ in lines]
    return {"lags": lags, "add_s": add_s, **judge(n, [(i, name) for _, i, _, name in lines])}


def read_ap4_lines(out: Path) -> Iterator[tuple[float, int, float, str]]:
    for log in out.glob("*.log"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                yield float(parts[0]), int(parts[1]), float(parts[2]), parts[3]


# --- failover ------------------------------------------------------------------------


def failover(trials: int, lease: str) -> list[float]:
    """Seconds from a kill -9 to every job of the dead instance fired elsewhere, per trial."""
    times: list[float] = []
    config = CONFIG.format(lease=lease)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gwb8f")))
        schema = stack.enter_context(fresh_schema("b8fo"))
        env = {"GATEWAYD_STORE": URL}
        config += f'[store]\nschema = "{schema}"\n'
        members = start_members(tmp, MEMBERS, config=config, env=env, stack=stack)
        for n in range(20):
            members[0].add_job("--name", f"tick{n}", "--every", "1s", "--system-event", "t")
        for trial in range(trials):
            times.append(one_failover(schema, members[trial % len(members)]))
            print(f"trial {trial + 1}: {times[-1]:.2f}s", flush=True)
    return times


def one_failover(schema: str, victim: DaemonProcess) -> float:
    victim_id = victim.call("gateway.status")["instance_id"]
    wait_for(lambda: last_owners(schema).get(victim_id), what="the victim's share")
    killed_at = datetime.now(UTC)
    victim.kill()
    its_jobs = set(last_owners(schema)[victim_id])
    until_all = wait_for(
        lambda: fired_elsewhere(schema, its_jobs, victim_id, killed_at),
        what="the dead instance's jobs fired elsewhere",
        timeout=120,
    )
    victim.start()
    seconds: float = (until_all - killed_at).total_seconds()
    return seconds


def last_owners(schema: str) -> dict[str, list[str]]:
    """Each instance's jobs: those whose latest slot it recorded."""
    rows = pg_rows(
        schema,
        "SELECT DISTINCT ON (job_id) job_id, owner FROM runs "
        "WHERE scheduled_for IS NOT NULL ORDER BY job_id, scheduled_for DESC",
    )
    by_owner: dict[str, list[str]] = {}
    for job_id, owner in rows:
        by_owner.setdefault(owner, []).append(job_id)
    return by_owner


def fired_elsewhere(schema: str, jobs: set[str], dead: str, killed_at: datetime) -> datetime | None:
    """When the last of ``jobs`` started a run owned by another instance after the kill."""
    rows = pg_rows(
        schema,
        "SELECT job_id, min(started_at) FROM runs WHERE owner <> %s AND started_at > %s "
        "GROUP BY job_id",
        (dead, int(killed_at.timestamp() * 1e6)),
    )
    firsts = {job_id: from_us(started) for job_id, started in rows if job_id in jobs}
    if len(firsts) < len(jobs):
        return None
    return max(t for t in firsts.values() if t is not None)


def wait_for(check: Any, *, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # the benchmark looks at the store now and then
    raise TimeoutError(f"no {what} within {timeout}s")


# --- report --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--lease", default="10s")
    parser.add_argument("--only", choices=("load", "failover"))
    parser.add_argument("--skip-apscheduler", action="store_true")
    parser.add_argument("--runs", choices=("both", "in-process", "exec"), default="both")
    args = parser.parse_args()
    print(machine(), flush=True)
    n, window = args.jobs, args.window
    if args.only != "failover":
        rows = []
        kinds = {"both": (False, True), "in-process": (False,), "exec": (True,)}[args.runs]
        for exec_jobs in kinds:
            kind = "exec" if exec_jobs else "in-process"
            cases: list[tuple[str, str, Any]] = [
                (
                    "gatewayd 3 x PostgreSQL",
                    "gatewayd_postgresql",
                    lambda e=exec_jobs: gatewayd_load(
                        n, window, exec_jobs=e, cluster=True, lease=args.lease
                    ),
                ),
                (
                    "gatewayd 1 x SQLite",
                    "gatewayd_sqlite",
                    lambda e=exec_jobs: gatewayd_load(
                        n, window, exec_jobs=e, cluster=False, lease=args.lease
                    ),
                ),
            ]
            if not args.skip_apscheduler:
                cases.append(
                    (
                        "APScheduler 4 3 x PostgreSQL",
                        "apscheduler4_postgresql",
                        lambda e=exec_jobs: apscheduler_load(n, window, exec_jobs=e),
                    )
                )
            for label, key, case in cases:
                result = case()
                stats = summarise(result["lags"])
                shares = " ".join(f"{v}" for v in result["shares"].values())
                rows.append(
                    [
                        label,
                        kind,
                        n,
                        stats["p50"],
                        stats["p99"],
                        stats["max"],
                        result["duplicates"],
                        result["missing"],
                        shares,
                    ]
                )
                lag_summary_line(
                    "b8",
                    key + ("_exec" if exec_jobs else ""),
                    n,
                    stats,
                    duplicates=result["duplicates"],
                    missing=result["missing"],
                )
        print()
        table(
            ["scheduler", "runs", "jobs", "p50 ms", "p99 ms", "max ms", "dup", "missing", "shares"],
            rows,
        )
    if args.only != "load":
        times = sorted(failover(args.trials, args.lease))
        stats = summarise(times)
        print()
        table(
            ["failover", "lease", "trials", "p50 s", "max s", "min s"],
            [["kill -9", args.lease, len(times), stats["p50"], stats["max"], times[0]]],
        )
        summary_line(
            "b8", case="failover", lease=args.lease, p50_s=stats["p50"], max_s=stats["max"]
        )


if __name__ == "__main__":
    main()
