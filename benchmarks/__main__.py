"""Run every benchmark in turn (`make bench`); each prints a table and SUMMARY lines."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "benchmarks.b1_firing_lag",
    "benchmarks.b2_throughput",
    "benchmarks.b3_scale",
    "benchmarks.b4_idle",
    "benchmarks.b5_waiter",
    "benchmarks.b6_clients",
    "benchmarks.b7_store_check",
    "benchmarks.loop_lag",
)


def main() -> int:
    failed = 0
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        failed += (
            subprocess.run([sys.executable, "-m", module, *sys.argv[1:2]], check=False).returncode
            != 0
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
