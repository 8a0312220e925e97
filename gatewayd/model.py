"""The domain values of gatewayd: jobs, schedules, payloads, runs, instances.

Everything here is a frozen value with no I/O. State changes are new values
made with :func:`dataclasses.replace`, recorded by a store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

# The zone of a schedule that names none, and the agent of a turn that names none.
UTC_ZONE = "UTC"
DEFAULT_AGENT = "default"


class ScheduleKind(enum.StrEnum):
    CRON = "cron"
    EVERY = "every"
    AT = "at"


class PayloadKind(enum.StrEnum):
    EXEC = "exec"
    AGENT_TURN = "agent_turn"
    SYSTEM_EVENT = "system_event"


class Overlap(enum.StrEnum):
    """What happens when a run is due while an earlier run of the job is live."""

    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"
    ALLOW = "allow"


class Catchup(enum.StrEnum):
    """What happens to slots that were missed, for example while the daemon was down."""

    LATEST = "latest"
    ALL = "all"
    NONE = "none"


class LeftoverPolicy(enum.StrEnum):
    """What happens to processes left in a run's group once its command has ended."""

    KILL = "kill"
    KEEP = "keep"


class SessionTarget(enum.StrEnum):
    ISOLATED = "isolated"
    MAIN = "main"


class JobSource(enum.StrEnum):
    API = "api"
    CONFIG = "config"


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCHUP = "catchup"
    RETRY = "retry"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @property
    def is_live(self) -> bool:
        return self in LIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self not in LIVE_STATUSES


LIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class ErrorKind(enum.StrEnum):
    """Why a run did not succeed."""

    EXIT = "exit"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    SPAWN = "spawn"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    OVERLAP = "overlap"
    MISSED = "missed"
    INTERNAL = "internal"


class StopReason(enum.StrEnum):
    """Why a run's session ended: how it stopped, or that it ended by itself."""

    COMPLETED = "completed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    REPLACED = "replaced"
    SHUTDOWN = "shutdown"
    JOB_REMOVED = "job-removed"
    INTERRUPTED = "interrupted"
    LOST = "lost"
    OWNER_GONE = "owner-gone"
    HOST_LOST = "host-lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When a job fires.

    ``cron`` uses ``expr`` in ``tz``; ``every`` fires at ``anchor + k * every_s``
    for k >= 1; ``at`` fires once at ``at``.
    """

    kind: ScheduleKind
    expr: str | None = None
    tz: str = UTC_ZONE
    every_s: float | None = None
    at: datetime | None = None
    anchor: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecPayload:
    """A command as an argv (split with shlex) or a shell script run by /bin/sh -c."""

    command: str | None = None
    shell: str | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    kind: PayloadKind = field(default=PayloadKind.EXEC, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTurnPayload:
    """A message sent to the agent command configured as ``[agents.<agent>]``."""

    message: str
    agent: str = DEFAULT_AGENT

    kind: PayloadKind = field(default=PayloadKind.AGENT_TURN, init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemEventPayload:
    """A line of text appended to the main session's inbox."""

    text: str

    kind: PayloadKind = field(default=PayloadKind.SYSTEM_EVENT, init=False)


Payload = ExecPayload | AgentTurnPayload | SystemEventPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """An agent command from ``[agents.NAME]``: what agent turns of that agent run."""

    name: str
    command: tuple[str, ...]
    timeout_s: float | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``max_attempts`` counts the first attempt: 1 means no retry."""

    max_attempts: int = 1
    backoff_s: float = 30.0
    max_backoff_s: float = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    """When a job's alerts go to its ``sinks`` (``[alerts.NAME]`` of the config).

    ``after`` consecutive failed or timed-out runs raise one alert per streak,
    and again every ``cooldown_s`` while it lasts; the first success after it,
    a recovery. A missed slot raises one. ``expect_success_within_s``: no
    success for that long raises one, once per silence. No sinks, no alerts.
    """

    sinks: tuple[str, ...] = ()
    after: int = 1
    cooldown_s: float = 3600.0
    expect_success_within_s: float | None = None


class StandingChange(enum.StrEnum):
    """A change of whether a job's timer fires it."""

    DISABLED = "disabled"
    ENABLED = "enabled"
    PAUSED = "paused"  # after ``pause_after`` consecutive failures
    RESUMED = "resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """When and by whom a job was disabled, enabled, paused or resumed.

    ``by`` is who asked (the API or the config file), ``None`` for the pause
    rule; a pause names the failures in a row and the run that made them.
    """

    change: StandingChange
    at: datetime
    by: JobSource | None = None
    failures: int | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where an imported job came from: the scheduler and the job's id there.

    A store holds at most one job of each origin, so importing again adds nothing.
    """

    system: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.system}:{self.id}"

    @classmethod
    def from_key(cls, key: str) -> Origin:
        system, _, origin_id = key.partition(":")
        return cls(system=system, id=origin_id)


# How many changes of its standing a job keeps, newest last.
STANDING_KEPT = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A schedule, a payload and its policies.

    ``timeout_s``, ``catchup_window_s`` and ``max_output`` are ``None`` when the
    job follows the configured default; a ``timeout_s`` of 0 means no timeout, a
    ``max_output`` of 0 no limit on the bytes of output kept. ``next_slot`` is
    the next nominal slot the scheduler will handle (before stagger); only the
    scheduler moves it, in the same transaction that records the slot's run.
    """

    id: str
    name: str
    description: str | None = None
    enabled: bool = True
    schedule: Schedule
    payload: Payload
    timeout_s: float | None = None
    overlap: Overlap = Overlap.SKIP
    catchup: Catchup = Catchup.LATEST
    catchup_window_s: float | None = None
    stagger_s: float = 0.0
    retry: RetryPolicy = RetryPolicy()
    session: SessionTarget = SessionTarget.ISOLATED
    source: JobSource = JobSource.API
    delete_after_run: bool = False
    max_output: int | None = None
    leftovers: LeftoverPolicy = LeftoverPolicy.KILL
    alerts: AlertPolicy = AlertPolicy()
    pause_after: int | None = None
    origin: Origin | None = None
    next_slot: datetime | None = None
    created_at: datetime
    updated_at: datetime
    standing: tuple[Standing, ...] = ()

    @property
    def paused(self) -> Standing | None:
        """The pause that holds the job's schedule now, or ``None``."""
        for change in reversed(self.standing):
            if change.change is StandingChange.PAUSED:
                return change
            if change.change in (StandingChange.RESUMED, StandingChange.ENABLED):
                return None
        return None

    @property
    def disabled(self) -> Standing | None:
        """When and by whom the job was disabled, while it is (``None`` if not recorded)."""
        if self.enabled:
            return None
        for change in reversed(self.standing):
            if change.change is StandingChange.DISABLED:
                return change
        return None

    def with_standing(self, change: Standing) -> Job:
        """This job with ``change`` added to its standing (the oldest beyond the kept ones go)."""
        return replace(self, standing=(*self.standing, change)[-STANDING_KEPT:])


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTiming:
    """What the timer needs of a job: enough to know when it next fires."""

    job_id: str
    next_slot: datetime | None
    enabled: bool
    stagger_s: float
    one_shot: bool

    @classmethod
    def of(cls, job: Job) -> JobTiming:
        return cls(
            job_id=job.id,
            next_slot=job.next_slot,
            enabled=job.enabled,
            stagger_s=job.stagger_s,
            one_shot=job.schedule.kind is ScheduleKind.AT,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeftoverProcess:
    pid: int
    command: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Leftovers:
    """Processes found in a run's group after its command ended, and what became of them."""

    policy: LeftoverPolicy
    processes: tuple[LeftoverProcess, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One execution of a job, from ``queued`` to exactly one terminal status."""

    run_id: str
    job_id: str
    job_name: str
    trigger: Trigger
    status: RunStatus
    scheduled_for: datetime | None = None
    queued_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    stop_reason: StopReason | None = None
    session_key: str
    attempt: int = 1
    summary: str | None = None
    output_tail: str | None = None
    owner: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    leftovers: Leftovers | None = None
    # A stop asked of the run's owner (by any instance), until the owner carries it out.
    cancel_requested: StopReason | None = None
    # Recorded by another scheduler and imported: history gatewayd did not run.
    imported: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """How a run ended: what a store records in one transition."""

    status: RunStatus
    ended_at: datetime
    exit_code: int | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    stop_reason: StopReason | None = None
    summary: str | None = None
    output_tail: str | None = None
    leftovers: Leftovers | None = None

    def __post_init__(self) -> None:
        if not self.status.is_terminal:
            raise ValueError(f"an outcome needs a terminal status, not {self.status}")


class SessionStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


SESSION_STATUS_OF_RUN = {
    RunStatus.SUCCEEDED: SessionStatus.DONE,
    RunStatus.FAILED: SessionStatus.FAILED,
    RunStatus.TIMED_OUT: SessionStatus.TIMED_OUT,
    RunStatus.CANCELLED: SessionStatus.CANCELLED,
    RunStatus.SKIPPED: SessionStatus.CANCELLED,
    RunStatus.INTERRUPTED: SessionStatus.INTERRUPTED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """The context a run executes in: ``cron:<job_id>:run:<run_id>``, or the shared ``main``."""

    key: str
    session_id: str
    job_id: str | None = None
    run_id: str | None = None
    status: SessionStatus = SessionStatus.RUNNING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    runtime_ms: int | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    stop_reason: StopReason | None = None


class InstanceState(enum.StrEnum):
    """Whether an instance may own runs: ``live`` while its lease is renewed."""

    LIVE = "live"
    STOPPED = "stopped"  # it stopped by itself; runs it left are anyone's on its host to settle
    GONE = "gone"  # its lease lapsed (or a successor proved it dead) and it was taken over


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One lifetime of a gatewayd process, and its lease on the runs it owns.

    ``host_id`` names the machine its runs' processes live on; ``state_dir``
    where their files are. ``heartbeat_at`` and ``lease_until`` are the store's
    clock: the instance is dead to every other once ``lease_until`` has passed.
    """

    instance_id: str
    pid: int
    host: str
    host_id: str | None = None  # None: recorded before hosts were (a single-host store)
    state_dir: str | None = None
    started_at: datetime
    heartbeat_at: datetime | None = None
    lease_until: datetime | None = None
    state: InstanceState = InstanceState.LIVE
    taken_by: str | None = None

    def lives_at(self, now: datetime) -> bool:
        """Whether it is alive at ``now`` (the store's clock): live, and its lease not
        lapsed. One recorded without a lease ran before leases did (an older schema):
        the store lets any instance take it over, so it is not alive either."""
        lease = self.lease_until
        return self.state is InstanceState.LIVE and lease is not None and lease > now

    def on_host(self, host_id: str) -> bool:
        """Whether its runs' processes live on ``host_id`` (one recorded without a host
        is taken to be on every host: it comes from a store only one host used)."""
        return self.host_id is None or self.host_id == host_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCounts:
    """Counts of runs by status, for status reports."""

    by_status: tuple[tuple[RunStatus, int], ...] = ()

    @property
    def total(self) -> int:
        return sum(n for _, n in self.by_status)

    def get(self, status: RunStatus) -> int:
        return dict(self.by_status).get(status, 0)


def elapsed_ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from ``start`` to ``end``, rounded half up, never negative."""
    delta = end - start
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return max(0, (micros + 500) // 1000)


def isolated_session_key(job_id: str, run_id: str) -> str:
    return f"cron:{job_id}:run:{run_id}"


MAIN_SESSION_KEY = "main"


def session_key_for(job: Job, run_id: str) -> str:
    if job.session is SessionTarget.MAIN:
        return MAIN_SESSION_KEY
    return isolated_session_key(job.id, run_id)
