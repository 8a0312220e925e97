"""Every default, once: a gateway's settings as frozen values.

``config`` reads the TOML file into these; the pipeline, the waiters, the
timer, recovery and the RPC server take their defaults from the instances
below, so that a default is written in one place. (A job's own policies have
their defaults on :class:`gatewayd.model.Job`.) Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gatewayd import bounds


class OnShutdown(enum.StrEnum):
    """What happens to runs in progress when the daemon stops."""

    DETACH = "detach"
    WAIT = "wait"
    CANCEL = "cancel"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.StrEnum):
    AUTO = "auto"
    CONSOLE = "console"
    JSON = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    """``[gateway]``: see config.example.toml for each key."""

    state_dir: str | None = None
    socket: str | None = None
    max_concurrent_runs: int = 16
    default_timeout_s: float = 3600.0
    kill_grace_s: float = 5.0
    on_shutdown: OnShutdown = OnShutdown.DETACH
    drain_timeout_s: float = 30.0
    sweep_interval_s: float = 60.0
    history_per_job: int = 1000
    history_max_age_s: float = 30 * 86400.0
    events_keep: int = 100_000
    event_queue: int = 1000
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    max_output: int = 16 * bounds.MIB
    max_connections: int = 256
    idle_timeout_s: float = 300.0
    # The names of the daemon's variables that runs inherit; ``None``: all of them.
    pass_env: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    """``[scheduler]``."""

    misfire_grace_s: float = 30.0
    catchup_window_s: float = 86400.0
    catchup_max_runs: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """``[cluster]``: what instances sharing one store agree on.

    ``lease_s``: an instance renews its heartbeat within this; one whose
    heartbeat is older is dead to every other instance, judged by the store's
    clock. ``host_id``: the machine a run's processes live on (``None``: the
    machine id). ``orphan_grace_s``: how long runs of a host with no live
    instance wait for one before they are recorded ``interrupted``
    (``host-lost``). ``backstop_s``: how often an instance looks at the store for
    what other instances did (events, job changes, stops asked of its runs)
    without a hint (see :mod:`gatewayd.broker`).
    """

    lease_s: float = 10.0
    host_id: str | None = None
    orphan_grace_s: float = 300.0
    backstop_s: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """``[http]``: ``listen`` (``HOST:PORT``; ``None``: no listener), and the variable
    ``token_env`` names, whose bearer token every request must carry (required for an
    address other than loopback)."""

    listen: str | None = None
    token_env: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """``[store]``: ``url`` (``None``: the embedded SQLite store in the state
    directory; see :mod:`gatewayd.store.location`), and the PostgreSQL schema that
    holds this cluster's tables (several clusters may share one database)."""

    url: str | None = field(default=None, repr=False)  # it may hold a password
    schema: str = "gatewayd"


GATEWAY = GatewaySettings()
STORE = StoreSettings()
SCHEDULER = SchedulerSettings()
CLUSTER = ClusterSettings()
# How much of a run's output is kept on its record.
TAIL_BYTES = 4096
# The most of an agent's reply (or an imported run's summary) kept as a run's summary.
MAX_SUMMARY_BYTES = 64 * 1024
# A peer that does not take a reply within this long is disconnected.
WRITE_TIMEOUT_S = 30.0
# The most large reads (lists) the RPC server computes at once.
MAX_WORKING_READS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How much run history to keep: the newest runs per job, and a maximum age."""

    keep_per_job: int = GATEWAY.history_per_job
    max_age_s: float = GATEWAY.history_max_age_s
    events_keep: int = GATEWAY.events_keep


DEFAULT_RETENTION = Retention()
