"""The store interface, its runs."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from gatewayd.model import (
    Run,
    RunCounts,
    RunOutcome,
    RunStatus,
    StopReason,
)
from gatewayd.store.transitions import Expected
from gatewayd.store.values import NOTHING, Publication


class RunStore(abc.ABC):
    """Runs and their transitions."""

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
    async def latest_run_with(self, job_id: str, status: RunStatus) -> Run | None:
        """The job's newest run (in the order runs were queued) with ``status``, or ``None``."""

    @abc.abstractmethod
    async def last_successes(self) -> dict[str, datetime]:
        """When each job's latest successful run ended, by job id (jobs with one only)."""

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
