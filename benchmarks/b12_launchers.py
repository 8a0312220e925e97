"""B12: what a run's helpers cost, today's and one long-lived launcher, per run of ``true``.

Today every exec run starts two helpers beside its command: the ``/bin/sh``
waiter (which outlives the daemon and writes the exit status) and, with a
``max_output`` cap, a perl pump. The alternative measured here is one launcher
process per instance, started once, that starts each command itself (a
``posix_spawn`` in a session of its own), reaps it and writes its exit file:
what containerd's shim or conmon do. It is a prototype for measuring, not
gatewayd's code: it does not pump output.

Each variant starts N runs of ``/bin/true`` one after another; the figures are
the wall time per run and the CPU of every process involved (the launcher's own
included), per run.

    .venv/bin/python -m benchmarks.b12_launchers [N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from gatewayd.runfiles import reserve_exit_file

from benchmarks.b5_waiter import become_subreaper, children_cpu, run, start_waiter
from benchmarks.common import summary_line, table

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The launcher: reads one argv per line (NUL-separated), starts it in a session of its
# own, reaps it, writes its status into the exit file named first, and answers "ok".
LAUNCHER = r"""
import os, sys
env = dict(os.environ)
out = os.fdopen(1, "w", buffering=1)
for line in sys.stdin:
    exit_path, *argv = line.rstrip("\n").split("\0")
    pid = os.posix_spawn(argv[0], argv, env, setsid=True)
    _, status = os.waitpid(pid, 0)
    with open(exit_path, "r+") as f:
        f.write(f"{os.waitstatus_to_exitcode(status)} 0\n")
    out.write("ok\n")
"""


def waiter(n: int, exit_file: Path, *, capped: bool) -> tuple[float, float]:
    env = dict(os.environ)
    with open(os.devnull, "wb") as null:
        return run(partial(start_waiter, str(exit_file), env, null, capped=capped), n)


def launcher(n: int, exit_file: Path) -> tuple[float, float, float]:
    """Wall and CPU per run, and the launcher's own start-up wall time."""
    cpu_0 = children_cpu()
    started = time.perf_counter()
    helper = subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert helper.stdin is not None and helper.stdout is not None
    helper.stdin.write(f"{exit_file}\0/bin/true\n")
    helper.stdin.flush()
    helper.stdout.readline()
    startup = time.perf_counter() - started
    t_0 = time.perf_counter()
    for _ in range(n):
        reserve_exit_file(exit_file)
        helper.stdin.write(f"{exit_file}\0/bin/true\n")
        helper.stdin.flush()
        helper.stdout.readline()
    wall = (time.perf_counter() - t_0) / n * 1000
    helper.stdin.close()
    helper.wait()
    cpu = (children_cpu() - cpu_0) / (n + 1) * 1000
    return wall, cpu, startup * 1000


def direct(n: int) -> tuple[float, float]:
    return run(lambda: subprocess.Popen(["/bin/true"], start_new_session=True), n)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    become_subreaper()  # the pumps outlive their waiters: their CPU is counted too
    with tempfile.TemporaryDirectory() as tmp:
        exit_file = Path(tmp) / "run.exit"
        direct(50)
        alone = direct(n)
        sh = waiter(n, exit_file, capped=False)
        pumped = waiter(n, exit_file, capped=True)
        shim = launcher(n, exit_file)
    rows = [
        ["the command alone", n, alone[0], alone[1]],
        ["sh waiter (no cap)", n, sh[0], sh[1]],
        ["sh waiter + perl pump (today's default)", n, pumped[0], pumped[1]],
        ["one launcher per instance (prototype)", n, shim[0], shim[1]],
    ]
    table(["start", "runs", "wall ms/run", "cpu ms/run (all processes)"], rows)
    print(f"launcher start-up, once: {shim[2]:.1f} ms")
    summary_line(
        "b12",
        runs=n,
        alone_cpu_ms=alone[1],
        waiter_cpu_ms=sh[1],
        waiter_pump_cpu_ms=pumped[1],
        launcher_cpu_ms=shim[1],
        launcher_wall_ms=shim[0],
        waiter_pump_wall_ms=pumped[0],
    )


if __name__ == "__main__":
    main()
