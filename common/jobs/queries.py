"""Job reads: filtered listing, statistics, event streams, and what executors watch."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from common.jobs.models import JobEventRecord, JobRecord
from common.jobs.status import ACTIVE, Status
from common.records import Job, JobEvent


@dataclass(frozen=True)
class JobFilter:
    owner_id: uuid.UUID | None = None  # None matches jobs without an owner...
    all_owners: bool = False  # ...unless every owner is wanted (admins, the executor)
    status: Status | None = None
    function: str | None = None
    tag: str | None = None
    parent_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class JobStats:
    by_status: dict[str, int]
    by_function: dict[str, dict[str, int]]
    duration_p50_s: float | None
    duration_p95_s: float | None
    total: int


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return Job.tags.op("@>")(func.cast(literal(f'["{_json_escape(tag)}"]'), JSONB))
    each = func.json_each(Job.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def _json_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _filtered(session: Session, query: Select, f: JobFilter) -> Select:  # type: ignore[type-arg]
    if not f.all_owners:
        query = query.where(
            Job.owner_id.is_(None) if f.owner_id is None else Job.owner_id == f.owner_id
        )
    if f.status is not None:
        query = query.where(Job.status == f.status)
    if f.function is not None:
        query = query.where(Job.function == f.function)
    if f.parent_id is not None:
        query = query.where(Job.parent_id == f.parent_id)
    if f.created_after is not None:
        query = query.where(Job.created_at >= f.created_after)
    if f.created_before is not None:
        query = query.where(Job.created_at < f.created_before)
    if f.tag is not None:
        query = query.where(_has_tag(session, f.tag))
    return query


class JobQueries:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def find(
        self, f: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first, and the total number that match."""
        with self.db() as session:
            total = session.scalar(_filtered(session, select(func.count(Job.id)), f)) or 0
            rows = session.scalars(
                _filtered(session, select(Job), f)
                .order_by(Job.created_at.desc(), Job.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [JobRecord.model_validate(row) for row in rows], total

    def stats(self, f: JobFilter) -> JobStats:
        """Counts by status and by function, and run-time percentiles of finished jobs."""
        with self.db() as session:
            counts = session.execute(
                _filtered(session, select(Job.function, Job.status, func.count()), f).group_by(
                    Job.function, Job.status
                )
            ).all()
            durations = session.execute(
                _filtered(session, select(Job.started_at, Job.finished_at), f).where(
                    Job.started_at.is_not(None), Job.finished_at.is_not(None)
                )
            ).all()
        by_status: Counter[str] = Counter({status.value: 0 for status in Status})
        by_function: dict[str, dict[str, int]] = {}
        for function, status, n in counts:
            by_status[status] += n
            by_function.setdefault(function, {})[status] = n
        seconds = sorted((end - start).total_seconds() for start, end in durations)
        return JobStats(
            by_status=dict(by_status),
            by_function=by_function,
            duration_p50_s=_percentile(seconds, 0.50),
            duration_p95_s=_percentile(seconds, 0.95),
            total=sum(by_status.values()),
        )

    def events(
        self, job_id: uuid.UUID, *, after_seq: int = 0, limit: int = 1000
    ) -> list[JobEventRecord]:
        with self.db() as session:
            rows = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
                .order_by(JobEvent.seq)
                .limit(limit)
            ).all()
            return [JobEventRecord.model_validate(row) for row in rows]

    def events_since(self, after_id: int, *, limit: int = 1000) -> list[JobEventRecord]:
        """Events of every job with an id above `after_id`, oldest first (the event hub)."""
        with self.db() as session:
            rows = session.scalars(
                select(JobEvent).where(JobEvent.id > after_id).order_by(JobEvent.id).limit(limit)
            ).all()
            return [JobEventRecord.model_validate(row) for row in rows]

    def last_event_id(self) -> int:
        with self.db() as session:
            return session.scalar(select(func.max(JobEvent.id))) or 0

    def children(self, parent_id: uuid.UUID) -> list[JobRecord]:
        return self.find(JobFilter(parent_id=parent_id, all_owners=True), limit=100_000)[0]

    def unclaimed(
        self, executor: str, *, limit: int = 100, updated_before: datetime | None = None
    ) -> list[uuid.UUID]:
        """Queued jobs of `executor` that no executor instance holds yet, oldest first
        (only those unchanged since `updated_before`, when given)."""
        query = select(Job.id).where(
            Job.status == Status.queued, Job.executor == executor, Job.handle.is_(None)
        )
        if updated_before is not None:
            query = query.where(Job.updated_at < updated_before)
        with self.db() as session:
            return list(session.scalars(query.order_by(Job.created_at).limit(limit)).all())

    def status_by_handle(self, handle: str) -> Status | None:
        """The status of the job held under `handle` (None when no job is)."""
        with self.db() as session:
            status = session.scalar(select(Job.status).where(Job.handle == handle))
        return Status(status) if status else None

    def quiet(
        self, executor: str, *, since: datetime, skip_handle: str, limit: int = 500
    ) -> list[JobRecord]:
        """Jobs of `executor` held under a handle (other than `skip_handle`) that have
        been quiet since `since`: queued and unchanged, or active with no heartbeat.
        Healthy running jobs beat, so they are never among them."""
        query = select(Job).where(
            Job.executor == executor,
            Job.handle.is_not(None),
            Job.handle != skip_handle,
            or_(
                and_(Job.status == Status.queued, Job.updated_at < since),
                and_(
                    Job.status.in_(ACTIVE),
                    or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < since),
                ),
            ),
        )
        with self.db() as session:
            rows = session.scalars(query.limit(limit)).all()
            return [JobRecord.model_validate(row) for row in rows]

    def cancelling_since(self, executor: str, before: datetime) -> list[JobRecord]:
        """Jobs of `executor` still `cancelling` whose cancel was asked before `before`."""
        asked = (
            select(func.max(JobEvent.created_at))
            .where(JobEvent.job_id == Job.id, JobEvent.status == Status.cancelling)
            .scalar_subquery()
        )
        with self.db() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.executor == executor, Job.status == Status.cancelling, asked < before
                )
            ).all()
            return [JobRecord.model_validate(row) for row in rows]

    def held_by_others(self, executor: str, prefix: str) -> list[JobRecord]:
        """Unfinished jobs of `executor` whose handle does not start with `prefix`."""
        with self.db() as session:
            rows = session.scalars(
                select(Job).where(
                    Job.executor == executor,
                    Job.handle.is_not(None),
                    ~Job.handle.startswith(prefix),
                    Job.status.in_([Status.queued, Status.running, Status.cancelling]),
                )
            ).all()
            return [JobRecord.model_validate(row) for row in rows]


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method) of sorted values."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)
