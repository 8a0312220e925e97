"""The store interface: the one durable record of jobs, runs and instances.

Every implementation passes the contract suite in ``tests/test_store_contract.py``,
with one instance and with two sharing the store. Every decision that keeps the
record true is taken inside one store transaction, so that any number of
instances can share a store: each state change is guarded by the state it
expects (two writers never both win), events get their ``seq`` in the
transaction that writes them (in commit order), and whether an instance lives
is judged by its lease on the store's clock.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatewayd.errors import StoreError
from gatewayd.model import (
    Instance,
    Job,
    JobSource,
    JobTiming,
    Run,
    RunCounts,
    RunOutcome,
    Session,
    StopReason,
    elapsed_ms,
)
from gatewayd.store.transitions import Expected

Envelope = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """Events, and the session rows they move, written in one transaction with a change.

    ``events`` are their bodies: the store gives each its ``seq`` in the
    transaction, above every ``seq`` ever stored, in commit order. A session
    given with its ``started_at`` replaces the row with its key; one without (an
    ending) records that row's ending (see :meth:`Store.publish`).
    """

    events: tuple[dict[str, Any], ...] = ()
    sessions: tuple[Session, ...] = ()

    @staticmethod
    def replaces(session: Session) -> bool:
        """Whether writing ``session`` replaces its row (else it records an ending)."""
        return session.started_at is not None

    def rows(self) -> list[Session]:
        """The session rows to write, in order.

        A start followed by the ending of the same session (work that was over
        before its start was recorded) becomes one row: ended, with its start.
        """
        rows: list[Session] = []
        for session in self.sessions:
            last = rows[-1] if rows else None
            if (
                last is not None
                and last.started_at is not None
                and last.key == session.key
                and not self.replaces(session)
                and session.ended_at is not None
            ):
                rows[-1] = dataclasses.replace(
                    session,
                    started_at=last.started_at,
                    runtime_ms=elapsed_ms(last.started_at, session.ended_at),
                )
            else:
                rows.append(session)
        return rows


NOTHING = Publication()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """Whether the store takes writes now, and if not, why and how much it holds.

    ``fault`` is a :class:`gatewayd.errors.StoreUnwritable` or
    :class:`gatewayd.errors.StoreCorrupt`. ``held`` counts the writes the store
    keeps to write, in order, once it can (the endings of runs, say).
    """

    fault: StoreError | None = None
    held: int = 0

    @property
    def writable(self) -> bool:
        return self.fault is None

    def refusal(self) -> StoreError | None:
        """A fresh copy of the fault, to raise where a write is refused; ``None`` if writable."""
        fault = self.fault
        return None if fault is None else type(fault)(fault.message, data=fault.data)


HealthListener = Callable[[StoreHealth], None]
EventsListener = Callable[[Sequence[Envelope]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotClaims:
    """A slot claimed by more than one run (what the unique slot index forbids)."""

    job_id: str
    scheduled_for: datetime
    runs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BadEnding:
    """A run whose status, ``started_at`` and ``ended_at`` disagree."""

    run_id: str
    job_id: str
    status: str
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """What ``doctor`` asks of any store: records that break the invariants, as stored."""

    slots_used_twice: tuple[SlotClaims, ...] = ()
    bad_endings: tuple[BadEnding, ...] = ()


class Store(abc.ABC):
    """Durable jobs, runs and instances.

    All methods are coroutines and never block the event loop. A method that
    changes state either does all of its change or none of it, and raises a
    :class:`gatewayd.errors.GatewaydError` describing why not.
    """

    # --- lifecycle ------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the store, creating or migrating its schema.

        Raises :class:`gatewayd.errors.StoreCorrupt` if the underlying data is
        damaged or is not a gatewayd store, and
        :class:`gatewayd.errors.StoreError` if it was written by a newer version.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store's resources. Idempotent."""

    def stats(self) -> dict[str, int]:
        """Counters for status reports (the SQLite store: commits and writes so far)."""
        return {}

    # --- health ---------------------------------------------------------------------
    #
    # A store whose disk or files fail (full, read-only, an I/O error, damaged)
    # does not raise into its callers' writes that must not be lost: it holds
    # them and writes them in order once it can. Writes that a user asked for
    # (a job change, a manual run) are refused at once with the fault instead.

    @property
    def health(self) -> StoreHealth:
        """The store's health now; a store that cannot fail is always writable."""
        return StoreHealth()

    def watch_health(self, listener: HealthListener) -> None:
        """Call ``listener(health)`` on the event loop each time the health changes."""
        return

    def check_writable(self) -> None:
        """Raise the store's fault if it takes no writes now (for writes a user asked for)."""
        refusal = self.health.refusal()
        if refusal is not None:
            raise refusal

    async def check_files(self) -> None:
        """Look at the store's files for a fault (a file deleted or replaced under it).

        The sweeper calls it; a fault found is reported through the health.
        """
        return

    # --- instances ------------------------------------------------------------------
    #
    # An instance owns the runs it starts while its lease lasts. Leases are judged
    # by the store's clock (:meth:`now`), never by an instance's own.

    @abc.abstractmethod
    async def now(self) -> datetime:
        """The store's clock, which judges every lease."""

    @abc.abstractmethod
    async def register_instance(self, instance: Instance, *, lease_s: float) -> Instance:
        """Record a new, ``live`` instance with a lease of ``lease_s`` from now; return it.

        ``heartbeat_at`` and ``lease_until`` are set by the store's clock.
        """

    @abc.abstractmethod
    async def renew_lease(self, instance_id: str, *, lease_s: float) -> bool:
        """Extend a ``live`` instance's lease to ``lease_s`` from now.

        ``False`` (nothing changed) if the instance is not live any more: it was
        taken over, and owns nothing.
        """

    @abc.abstractmethod
    async def stop_instance(self, instance_id: str) -> None:
        """Record that a live instance stopped by itself (its lease ends now)."""

    @abc.abstractmethod
    async def take_over(
        self, instance_id: str, *, by: str, grace_s: float = 0.0, proven_dead: bool = False
    ) -> bool:
        """Record a ``live`` instance ``gone``, taken over by instance ``by``; whether this won.

        Only an instance whose lease lapsed more than ``grace_s`` ago by the
        store's clock can be taken over, unless ``proven_dead`` (a successor holds
        the lock it held). Exactly one taker wins; the others get ``False``.
        """

    @abc.abstractmethod
    async def get_instance(self, instance_id: str) -> Instance | None:
        """The instance, or ``None``."""

    @abc.abstractmethod
    async def instances(self) -> list[Instance]:
        """Every instance recorded, oldest first."""

    # --- jobs -----------------------------------------------------------------------

    # Every change of a job carries its ``job.*`` event in ``publication``,
    # written in the same transaction, only if the change is.

    @abc.abstractmethod
    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        """Insert a job.

        Raises :class:`gatewayd.errors.NameTaken` if another job has its name,
        and :class:`gatewayd.errors.Conflict` if its id exists.
        """

    @abc.abstractmethod
    async def add_jobs(self, jobs: Sequence[Job], *, publication: Publication = NOTHING) -> None:
        """Insert many jobs in one transaction: all of them, or none (same errors as add_job)."""

    @abc.abstractmethod
    async def update_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        """Replace the stored job with the same id, including ``next_slot``.

        Raises :class:`gatewayd.errors.NotFound` if there is none and
        :class:`gatewayd.errors.NameTaken` if another job has the new name.
        """

    @abc.abstractmethod
    async def delete_job(self, job_id: str, *, publication: Publication = NOTHING) -> None:
        """Delete a job. Its runs stay in history.

        Raises :class:`gatewayd.errors.NotFound` if there is no such job.
        """

    @abc.abstractmethod
    async def delete_idle_job(self, job_id: str, *, publication: Publication = NOTHING) -> bool:
        """Delete a job if none of its runs is live, in one transaction; whether it went.

        A job that does not exist is not deleted (``False``).
        """

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or ``None``."""

    @abc.abstractmethod
    async def find_job(self, ref: str) -> Job | None:
        """The job whose id is ``ref``, else the job whose name is ``ref``, else ``None``."""

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        source: JobSource | None = None,
        enabled_only: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs by name: from ``source`` only and enabled only, if asked.

        A page: at most ``limit`` jobs (all if ``None``) whose names sort after ``after``.
        """

    @abc.abstractmethod
    async def job_timings(self) -> list[JobTiming]:
        """What the timer needs of every job; much cheaper than reading whole jobs."""

    @abc.abstractmethod
    async def count_jobs(self) -> tuple[int, int]:
        """How many jobs there are, and how many of them are enabled."""

    # --- runs -----------------------------------------------------------------------

    @abc.abstractmethod
    async def record_runs(
        self,
        runs: Sequence[Run],
        *,
        advance_job: str | None = None,
        next_slot: datetime | None = None,
        expected: Expected | None = None,
        publication: Publication = NOTHING,
    ) -> None:
        """Insert new runs of one job and, if ``advance_job`` is given, set its ``next_slot``.

        All in one transaction with ``publication``: a slot is never advanced
        without its run being recorded, nor a run recorded without its events.
        With ``expected``, the job must be as the decision saw it (its live runs,
        and its ``next_slot`` if advanced: compare-and-set), else
        :class:`gatewayd.errors.StaleDecision` and nothing is written; see
        :func:`gatewayd.store.transitions.check_expected`. Runs whose trigger is
        not ``retry`` and whose ``scheduled_for`` is set claim the slot
        ``(job_id, scheduled_for)``; if any slot is already claimed,
        :class:`gatewayd.errors.SlotTaken` is raised and nothing is written.
        ``advance_job`` must exist, else :class:`gatewayd.errors.NotFound` and
        nothing is written.
        """

    @abc.abstractmethod
    async def start_run(
        self,
        run_id: str,
        *,
        started_at: datetime,
        owner: str,
        pid: int | None,
        pid_start: int | None = None,
        outcome: RunOutcome | None = None,
        publication: Publication = NOTHING,
    ) -> Run:
        """Move a ``queued`` run to ``running``, owned by ``owner``; return it.

        With ``outcome``, the run also ends with it, in the same transaction (its
        work was over before its start could be recorded): its one terminal
        status, as :meth:`finish_run` records it. ``publication`` is written in
        the same transaction, or not at all.

        ``pid`` and ``pid_start`` (the process start time) identify its process.

        Raises :class:`gatewayd.errors.RunAlreadyEnded` if the run is not
        ``queued`` any more (for example, it was cancelled), and
        :class:`gatewayd.errors.NotFound` if it does not exist.
        """

    @abc.abstractmethod
    async def adopt_run(self, run_id: str, *, from_owner: str | None, to_owner: str) -> Run:
        """Make ``to_owner`` the owner of a live run owned by ``from_owner``; return it.

        Exactly one adopter wins: :class:`gatewayd.errors.Conflict` if the run is
        no longer owned by ``from_owner``, :class:`gatewayd.errors.RunAlreadyEnded`
        if it has ended, :class:`gatewayd.errors.NotFound` if it does not exist.
        """

    @abc.abstractmethod
    async def finish_run(
        self, run_id: str, outcome: RunOutcome, *, publication: Publication = NOTHING
    ) -> Run:
        """Record the one terminal status of a live run; return the run.

        ``publication`` is written in the same transaction, or not at all.

        ``duration_ms`` is derived from ``started_at`` when the run started.
        Raises :class:`gatewayd.errors.RunAlreadyEnded` if it already has a
        terminal status (which is kept), and :class:`gatewayd.errors.NotFound`.
        """

    @abc.abstractmethod
    async def request_cancel(self, run_id: str, reason: StopReason) -> Run:
        """Ask the owner of a live run to stop it, durably; return the run.

        The first reason asked stays. Raises
        :class:`gatewayd.errors.RunAlreadyEnded` if the run has ended, and
        :class:`gatewayd.errors.NotFound`.
        """

    @abc.abstractmethod
    async def cancel_requests(self, owner: str) -> list[Run]:
        """The live runs of ``owner`` whose stop was asked, oldest first."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> Run | None:
        """The run, or ``None``."""

    @abc.abstractmethod
    async def list_runs(self, job_id: str, *, limit: int, before: str | None = None) -> list[Run]:
        """The job's latest ``limit`` runs, newest first; only older than run ``before``, if given.

        Raises :class:`gatewayd.errors.NotFound` if there is no run ``before``.
        """

    @abc.abstractmethod
    async def latest_runs(self, job_ids: Sequence[str] | None = None) -> dict[str, Run]:
        """The newest run of each job (of every job if ``job_ids`` is ``None``)."""

    @abc.abstractmethod
    async def previous_started_run(self, job_id: str, before_run_id: str) -> Run | None:
        """The newest run of the job that started and was queued before ``before_run_id``."""

    @abc.abstractmethod
    async def live_runs(self, job_id: str | None = None) -> list[Run]:
        """Runs that are ``queued`` or ``running``, oldest first; of one job if given."""

    @abc.abstractmethod
    async def count_runs(self) -> RunCounts:
        """How many runs there are in each status."""

    @abc.abstractmethod
    async def prune_runs(self, *, keep_per_job: int, queued_before: datetime) -> list[Run]:
        """Delete ended runs beyond retention; return the runs deleted.

        A run is deleted if it is not among its job's newest ``keep_per_job``
        runs, or if it was queued before ``queued_before``. Live runs are never
        deleted, whatever their age. A deleted run's isolated session goes with it.
        """

    # --- sessions and events ---------------------------------------------------------

    @abc.abstractmethod
    async def main_session_id(self, candidate: str) -> str:
        """The id of the shared ``main`` session: the one stored, else ``candidate``,
        stored now. Every instance sharing the store gets the same id."""

    @abc.abstractmethod
    async def get_session(self, key: str) -> Session | None:
        """The session, or ``None``."""

    @abc.abstractmethod
    async def list_sessions(self, *, limit: int, before: str | None = None) -> list[Session]:
        """Up to ``limit`` sessions, ``main`` among them, in one order that pages can follow.

        The order: the most recently started first, sessions started in the same
        instant by key (descending), those without a start last (by key,
        descending). With ``before`` (a session's key), only the sessions after it
        in that order; :class:`gatewayd.errors.NotFound` if there is no such session.
        """

    @abc.abstractmethod
    async def publish(self, publication: Publication) -> None:
        """Write events and session rows, all in one transaction or none.

        Each event gets the next ``seq`` (see :class:`Publication`); those who
        watch the store's events hear of them once committed (see
        :meth:`watch_events`). A session with its ``started_at`` is inserted or
        replaces the row with its key. A session without (an ending) records its
        ending: every field but ``started_at``, which is kept from the stored
        row, with ``runtime_ms`` derived from it; with no stored row it is
        recorded with no start. See :meth:`Publication.rows`.
        """

    @abc.abstractmethod
    def watch_events(self, listener: EventsListener) -> None:
        """Call ``listener(envelopes)`` on the event loop with the events this store
        object commits, with their ``seq``, right after each commit, in commit order.

        Events that other instances commit to a shared store are not heard here:
        read them with :meth:`events_after`.
        """

    @abc.abstractmethod
    async def last_event_seq(self) -> int:
        """The highest ``seq`` ever stored, pruned or not (0 if none): never to be reused."""

    @abc.abstractmethod
    async def events_after(self, seq: int, *, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` events with a ``seq`` above ``seq``, oldest first, with ``seq``."""

    @abc.abstractmethod
    async def latest_events(self, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first, with ``seq``."""

    @abc.abstractmethod
    async def prune_events(self, *, keep: int) -> int:
        """Delete all but the newest ``keep`` events; how many went."""

    # --- checking -------------------------------------------------------------------

    @abc.abstractmethod
    async def audit(self) -> Audit:
        """Records that break the invariants as stored (for ``doctor``); reads only."""
