"""The store interface, its jobs."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from gatewayd.model import Job, JobSource, JobTiming, Run
from gatewayd.store.values import NOTHING, Due, DueClaims, Publication


class JobStore(abc.ABC):
    """Jobs, and their slots."""

    #: Whether :meth:`claim_due` gives each job to one instance at a time (a store
    #: shared across hosts), rather than every job asked for (the embedded stores).
    exclusive_claims: ClassVar[bool] = False

    # Every change of a job carries its ``job.*`` event in ``publication``,
    # written in the same transaction, only if the change is.

    @abc.abstractmethod
    async def add_job(self, job: Job, *, publication: Publication = NOTHING) -> None:
        """Insert a job.

        Raises :class:`gatewayd.errors.NameTaken` if another job has its name,
        and :class:`gatewayd.errors.Conflict` if its id exists.
        """

    @abc.abstractmethod
    async def add_jobs(
        self,
        jobs: Sequence[Job],
        *,
        history: Sequence[Run] = (),
        publication: Publication = NOTHING,
    ) -> None:
        """Insert many jobs in one transaction: all of them, or none (same errors as add_job).

        ``history`` are ended runs of these jobs that another scheduler recorded
        (an import), inserted in the same transaction. A job whose ``origin``
        another job has raises :class:`gatewayd.errors.Conflict`, naming it.
        """

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

    async def claim_due(self, due: Sequence[Due], *, by: str, hold_s: float) -> DueClaims:
        """Claim for instance ``by`` the due jobs whose next slot is still the one seen.

        In one transaction: a job is claimed if it is enabled, its ``next_slot``
        is ``due``'s, and no other instance holds a claim on it that has not
        lapsed. A claim lasts ``hold_s`` by the store's clock, unless
        :meth:`record_runs` advancing the job's slot, or :meth:`update_job`,
        ends it first. Only the holder's runs for the slot are recorded (see
        :class:`gatewayd.store.transitions.Expected`); so instances share the
        work of the due slots instead of each deciding every one.

        A store shared across hosts claims for real, skipping the jobs another
        transaction is claiming rather than waiting for it (PostgreSQL: ``FOR
        UPDATE SKIP LOCKED``). This default, for an embedded store whose
        instances share one host and one writer, gives every job asked for: the
        compare-and-set of the slot alone keeps each slot once.
        """
        return DueClaims(mine=tuple(d.job_id for d in due))
