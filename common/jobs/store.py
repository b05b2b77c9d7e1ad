"""Job writes: creation, compare-and-set transitions, progress, logs and heartbeats.

Every change is one guarded `UPDATE ... WHERE status IN (...) RETURNING` plus the event
row it produces, in one transaction: two writers can never both win a transition, and
the event log can never disagree with the job row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.errors import IllegalTransition, NotFound
from common.jobs.models import JobRecord
from common.jobs.status import ACTIVE, ALLOWED_FROM, Status
from common.records import Job, JobEvent, transaction
from common.records.types import utcnow


class JobStore:
    """All writes to `jobs` and `job_events` go through here."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def create(
        self,
        *,
        function: str,
        params: dict[str, Any],
        executor: str,
        owner_id: uuid.UUID | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        parent_id: uuid.UUID | None = None,
        max_attempts: int = 1,
    ) -> JobRecord:
        now = utcnow()
        job = Job(
            id=uuid.uuid4(),
            owner_id=owner_id,
            function=function,
            params=params,
            name=name,
            tags=tags or [],
            status=Status.queued,
            progress=0.0,
            attempts=0,
            max_attempts=max_attempts,
            parent_id=parent_id,
            executor=executor,
            event_seq=1,
            created_at=now,
            updated_at=now,
        )
        with transaction(self.db) as session:
            session.add(job)
            session.flush()
            session.add(_event(job, "status", "submitted"))
        return JobRecord.model_validate(job)

    def update_labels(
        self, job_id: uuid.UUID, *, name: str | None, tags: list[str] | None, fields: set[str]
    ) -> JobRecord:
        """Change the name and/or tags named in `fields` (labels only, never the status)."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if "name" in fields:
            values["name"] = name
        if "tags" in fields:
            values["tags"] = tags or []
        with transaction(self.db) as session:
            job = session.scalars(
                update(Job).where(Job.id == job_id).values(**values).returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                raise NotFound(f"no job with id {job_id}")
            return JobRecord.model_validate(job)

    def get(self, job_id: uuid.UUID) -> JobRecord:
        with self.db() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job with id {job_id}")
            return JobRecord.model_validate(job)

    def transition(
        self,
        job_id: uuid.UUID,
        to: Status,
        *,
        message: str | None = None,
        guards: Sequence[ColumnElement[bool]] = (),
        **values: Any,
    ) -> JobRecord:
        """Move the job to `to` if its current status allows it, else IllegalTransition.

        `guards` add conditions to the compare-and-set (e.g. attempts left).
        """
        now = utcnow()
        values.update(status=to, updated_at=now, event_seq=Job.event_seq + 1)
        if to.terminal:
            values.setdefault("finished_at", now)
        with transaction(self.db) as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ALLOWED_FROM[to]), *guards)
                .values(**values)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                current = session.scalar(select(Job.status).where(Job.id == job_id))
                if current is None:
                    raise NotFound(f"no job with id {job_id}")
                raise IllegalTransition(f"the job is {current}; it cannot become {to}")
            session.add(_event(job, "status", message))
            return JobRecord.model_validate(job)

    def try_transition(self, job_id: uuid.UUID, to: Status, **kwargs: Any) -> JobRecord | None:
        """`transition`, answering None instead of raising when the job moved on."""
        try:
            return self.transition(job_id, to, **kwargs)
        except (IllegalTransition, NotFound):
            return None

    def start(self, job_id: uuid.UUID, handle: str | None) -> JobRecord | None:
        """queued -> running for one attempt; None when the job is no longer queued."""
        now = utcnow()
        return self.try_transition(
            job_id,
            Status.running,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            handle=handle,
            message="started",
        )

    def report(
        self,
        job_id: uuid.UUID,
        *,
        kind: str,
        progress: float | None = None,
        message: str | None = None,
    ) -> Status | None:
        """Append a progress or log event to an active job; returns its status (None if
        the job is no longer active, so a late report from a stopped worker is dropped)."""
        now = utcnow()
        values: dict[str, Any] = {
            "event_seq": Job.event_seq + 1,
            "heartbeat_at": now,
            "updated_at": now,
        }
        if kind == "progress":
            values.update(progress=progress, progress_message=message)
        with transaction(self.db) as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(**values)
                .returning(Job),
                execution_options={"synchronize_session": False},
            ).one_or_none()
            if job is None:
                return None
            session.add(_event(job, kind, message))
            return Status(job.status)

    def heartbeat(self, job_id: uuid.UUID) -> Status | None:
        """Refresh the heartbeat of an active job; returns its status (None if not active)."""
        with transaction(self.db) as session:
            status = session.scalar(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(heartbeat_at=utcnow())
                .returning(Job.status)
            )
        return Status(status) if status else None

    def status_of(self, job_id: uuid.UUID) -> Status | None:
        with self.db() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        return Status(status) if status else None

    def claim(self, job_id: uuid.UUID, handle: str) -> bool:
        """Record which executor instance holds a queued job; False if someone else does."""
        with transaction(self.db) as session:
            claimed = session.scalar(
                update(Job)
                .where(Job.id == job_id, Job.status == Status.queued, Job.handle.is_(None))
                .values(handle=handle)
                .returning(Job.id)
            )
        return claimed is not None

    def unclaim(self, job_id: uuid.UUID, handle: str) -> bool:
        """Release a queued job held under `handle`, so any executor instance may take it."""
        with transaction(self.db) as session:
            released = session.scalar(
                update(Job)
                .where(Job.id == job_id, Job.status == Status.queued, Job.handle == handle)
                .values(handle=None)
                .returning(Job.id)
            )
        return released is not None

    def request_cancel(self, job_id: uuid.UUID, *, message: str = "cancel requested") -> JobRecord:
        """queued -> cancelled at once; running -> cancelling (the worker winds down)."""
        job = self.get(job_id)
        if job.status is Status.queued:
            done = self.try_transition(job_id, Status.cancelled, message=message)
            if done is not None:
                return done
            job = self.get(job_id)  # a worker took it meanwhile: cancel the running job
        if job.status is Status.running:
            return self.transition(job_id, Status.cancelling, message=message)
        if job.status is Status.cancelling:
            return job
        raise IllegalTransition(
            f"the job is {job.status}; only queued or running jobs can be cancelled"
        )

    def try_cancel(
        self, job_id: uuid.UUID, *, message: str = "cancel requested"
    ) -> JobRecord | None:
        try:
            return self.request_cancel(job_id, message=message)
        except (IllegalTransition, NotFound):
            return None

    def statuses(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Status]:
        """Status of each existing job among `job_ids`, in one query of two columns (what
        a waiting parent polls: no records built, no JSON parsed)."""
        with self.db() as session:
            rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids)))
            return {job_id: Status(status) for job_id, status in rows}

    def get_many(self, job_ids: Sequence[uuid.UUID]) -> list[JobRecord]:
        """Jobs in the order of `job_ids`, in one query (missing ids raise NotFound)."""
        with self.db() as session:
            rows = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        missing = [str(job_id) for job_id in job_ids if job_id not in rows]
        if missing:
            raise NotFound(f"no job with id {missing[0]}")
        return [JobRecord.model_validate(rows[job_id]) for job_id in job_ids]

    def lose(self, job_id: uuid.UUID, reason: str) -> JobRecord | None:
        """The worker holding the job is gone: retry while attempts remain, else fail.

        A job that was being cancelled ends cancelled. Returns the new record, or None
        when the job had already ended (nothing to recover).
        """
        error = {"type": "worker-lost", "message": reason}
        return (
            self.try_transition(
                job_id,
                Status.queued,
                guards=[Job.attempts < Job.max_attempts],
                handle=None,
                error=error,
                message=f"{reason}; retrying",
            )
            or self.try_transition(
                job_id,
                Status.failed,
                guards=[Job.status == Status.running],
                error=error,
                message=reason,
            )
            or self.try_transition(
                job_id, Status.cancelled, guards=[Job.status == Status.cancelling], message=reason
            )
        )

    def stale(self, older_than: timedelta) -> list[JobRecord]:
        """Active jobs whose heartbeat stopped: their worker is presumed dead."""
        cutoff: datetime = utcnow() - older_than
        with self.db() as session:
            jobs = session.scalars(
                select(Job).where(Job.status.in_(ACTIVE), Job.heartbeat_at < cutoff)
            ).all()
            return [JobRecord.model_validate(job) for job in jobs]


def _event(job: Job, kind: str, message: str | None) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        owner_id=job.owner_id,
        seq=job.event_seq,
        kind=kind,
        status=job.status,
        progress=job.progress,
        message=message,
        created_at=utcnow(),
    )
