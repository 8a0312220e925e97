"""B5: what the waiter costs each run: the command alone, and under its waiter.

Both are started the way gatewayd starts runs (``subprocess``, a vfork, in a new
session), N times one after another, for ``true``:

* ``direct``: ``/bin/true``;
* ``waiter``: ``/bin/sh -c WAITER <exit file> ... /bin/true``, started by gatewayd's
  own ``spawn_waiter`` with ``max_output = 0`` (no cap): it also writes the exit
  status file that lets a run outlive the daemon;
* ``waiter + pump``: the same with the default ``max_output`` (16 MiB), whose
  output goes through the pump that caps the log.

The differences are the waiter's and the pump's price per run, in wall time and
in CPU. The pump outlives its waiter; this process is made a child subreaper
(Linux) so that the pump's CPU is counted too.

    .venv/bin/python -m benchmarks.b5_waiter [N]
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gatewayd.runfiles import reserve_exit_file
from gatewayd.runners.spawn import Launch, spawn_waiter

from benchmarks.common import summary_line, table


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans() -> None:
    """Wait for every child left (the pumps, reparented here): their CPU is counted."""
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)


def start_waiter(
    exit_file: str, env: dict[str, str], log: BinaryIO, *, capped: bool, perl: bool = True
) -> subprocess.Popen[bytes]:
    """``/bin/true`` under gatewayd's own waiter (with the pump if ``capped``), as runs start."""
    reserve_exit_file(Path(exit_file))
    pipe = os.pipe() if capped else None
    try:
        process, pidfd = spawn_waiter(
            Launch(
                argv=["/bin/true"],
                exit_path=exit_file,
                cwd=None,
                env=env,
                log=log,
                umask=0o022,
                nofile=None,
                max_output=16 << 20,
                pipe=pipe,
                perl_pump=perl,
            )
        )
    finally:
        for fd in pipe or ():
            os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    return process


def run(start: Callable[[], subprocess.Popen[bytes]], n: int) -> tuple[float, float]:
    cpu_0, t_0 = children_cpu(), time.perf_counter()
    for _ in range(n):
        start().wait()
    reap_orphans()
    wall = (time.perf_counter() - t_0) / n * 1000
    cpu = (children_cpu() - cpu_0) / n * 1000
    return wall, cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    env = dict(os.environ)
    become_subreaper()
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

        def waiter_start(capped: bool, perl: bool = True) -> subprocess.Popen[bytes]:
            return start_waiter(exit_file, env, null, capped=capped, perl=perl)

        run(direct_start, 50)
        direct = run(direct_start, n)
        waited = run(lambda: waiter_start(False), n)
        pumped = run(lambda: waiter_start(True), n)
        headed = run(lambda: waiter_start(True, perl=False), n)
    rows = [
        ["direct", n, direct[0], direct[1]],
        ["under the waiter (no cap)", n, waited[0], waited[1]],
        ["under the waiter + pump", n, pumped[0], pumped[1]],
        ["waiter's cost", n, waited[0] - direct[0], waited[1] - direct[1]],
        ["waiter + pump's cost", n, pumped[0] - direct[0], pumped[1] - direct[1]],
        ["waiter + head pump's cost", n, headed[0] - direct[0], headed[1] - direct[1]],
    ]
    table(["start", "runs", "wall ms/run", "child cpu ms/run"], rows)
    summary_line(
        "b5",
        runs=n,
        direct_wall_ms=direct[0],
        waiter_wall_ms=waited[0],
        overhead_wall_ms=waited[0] - direct[0],
        overhead_cpu_ms=waited[1] - direct[1],
        pump_overhead_cpu_ms=pumped[1] - direct[1],
        head_pump_overhead_cpu_ms=headed[1] - direct[1],
    )


if __name__ == "__main__":
    main()
