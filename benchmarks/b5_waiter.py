"""B5: what the waiter costs each run: the command alone, and under its waiter.

Both are started the way gatewayd starts runs (``subprocess``, a vfork, in a new
session), N times one after another, for ``true``:

* ``direct``: ``/bin/true``;
* ``waiter``: ``/bin/sh -c WAITER <exit file> "" /bin/true``, started by gatewayd's
  own ``spawn_waiter``; it also writes the exit status file that lets a run
  outlive the daemon.

The difference is the waiter's price per run, in wall time and in CPU.

    .venv/bin/python -m benchmarks.b5_waiter [N]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gatewayd.runners.spawn import Launch, spawn_waiter

from benchmarks.common import summary_line, table


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(start: Callable[[], subprocess.Popen[bytes]], n: int) -> tuple[float, float]:
    cpu_0, t_0 = children_cpu(), time.perf_counter()
    for _ in range(n):
        start().wait()
    wall = (time.perf_counter() - t_0) / n * 1000
    cpu = (children_cpu() - cpu_0) / n * 1000
    return wall, cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "wb") as null:
        exit_file = str(Path(tmp) / "run.exit")

        def direct_start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                ["/bin/true"],
                stdin=subprocess.DEVNULL,
                stdout=null,
                stderr=null,
                env=env,
                start_new_session=True,
            )

        def waiter_start() -> subprocess.Popen[bytes]:
            process, pidfd = spawn_waiter(
                Launch(
                    argv=["/bin/true"],
                    exit_path=exit_file,
                    cwd=None,
                    env=env,
                    stdin=None,
                    stdout=null,
                    stderr=null,
                )
            )
            if pidfd is not None:
                os.close(pidfd)
            return process

        run(direct_start, 50)
        direct = run(direct_start, n)
        waited = run(waiter_start, n)
    rows = [
        ["direct", n, direct[0], direct[1]],
        ["under the waiter", n, waited[0], waited[1]],
        ["waiter's cost", n, waited[0] - direct[0], waited[1] - direct[1]],
    ]
    table(["start", "runs", "wall ms/run", "child cpu ms/run"], rows)
    summary_line(
        "b5",
        runs=n,
        direct_wall_ms=direct[0],
        waiter_wall_ms=waited[0],
        overhead_wall_ms=waited[0] - direct[0],
        overhead_cpu_ms=waited[1] - direct[1],
    )


if __name__ == "__main__":
    main()
