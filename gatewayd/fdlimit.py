"""File descriptors: enough for every connection allowed, with runs' share kept apart.

The daemon raises its soft ``RLIMIT_NOFILE`` toward the hard limit at start,
and caps its connections so that the descriptors runs need (their log, pipes,
exit file and pidfd) and the store's are never taken by clients. Runs start
with the soft limit the daemon itself was given.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

# The store's connections, the lock, the listening socket, the loop, logs, workers.
BASE_RESERVE = 64
# What one run holds while it starts and runs: log, exit file, pipe ends, stdin, pidfd.
PER_RUN = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptors:
    """The limit the daemon was started with, the one it raised, and what clients may use."""

    inherited: int
    soft: int
    connections: int


def reserve_descriptors(*, connections: int, runs: int) -> Descriptors:
    """Raise the soft limit if needed; how many of ``connections`` fit beside runs' share."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserved = BASE_RESERVE + PER_RUN * runs
    need = reserved + connections
    raised = soft
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError):
            raised = soft
    usable = connections if raised == resource.RLIM_INFINITY else raised - reserved
    return Descriptors(inherited=soft, soft=raised, connections=max(1, min(connections, usable)))
