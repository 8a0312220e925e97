"""B5: what the waiter costs each run: the command alone, and under its waiter.

Both are started the way gatewayd starts runs (posix_spawn in a new session,
reaped through a pidfd), N times one after another, for ``true``:

* ``direct``: ``/bin/true``;
* ``waiter``: ``/bin/sh -c WAITER <exit file> "" /bin/true``, which also writes
  the exit status file that lets a run outlive the daemon.

The difference is the waiter's price per run, in wall time and in CPU.

    .venv/bin/python -m benchmarks.b5_waiter [N]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from gatewayd.runners.spawn import waiter_argv

from benchmarks.common import summary_line, table


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], n: int) -> tuple[float, float]:
    devnull = os.open(os.devnull, os.O_RDWR)
    cpu_0, t_0 = children_cpu(), time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)],
            setsid=True,
        )
        os.waitpid(pid, 0)
    wall = (time.perf_counter() - t_0) / n * 1000
    cpu = (children_cpu() - cpu_0) / n * 1000
    os.close(devnull)
    return wall, cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        exit_file = str(Path(tmp) / "run.exit")
        run(["/bin/true"], 50)
        direct = run(["/bin/true"], n)
        waited = run(waiter_argv(exit_file, None, ["/bin/true"]), n)
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
