"""Datasets: named collections of one owner's files, with a description and tags.

A file belongs to at most one dataset (`files.dataset_id`); adding it to another moves
it. Deleted files (`deleted_at` set) are invisible here: they cannot be added, and
they count for nothing. Deleting a dataset leaves its files in place, outside any
dataset. Ownership is checked by the caller (`owner_id=ANY` for admins).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.errors import NotFound
from common.jobs.status import Status
from common.records import File, Job, transaction
from common.records.models import Dataset, Upload
from common.records.types import json_array_has, utcnow

#: Job params that name the files or the dataset a job ran on.
FILE_PARAMS = ("file_id", "file_ids")
DATASET_PARAM = "dataset_id"
#: The capability that builds training data from a dataset (counted apart in stats).
BUILD_FUNCTION = "datasets.build"


class DatasetRecord(BaseModel):
    """A dataset as stored, with the count and bytes of its live files."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    name: str
    description: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    file_count: int = 0
    bytes: int = 0


class DatasetStats(BaseModel):
    """What a dataset holds and what was run on it."""

    dataset_id: uuid.UUID
    name: str
    file_count: int
    bytes: int
    kinds: dict[str, int]  # file kind ("" when unknown) -> count
    jobs: int
    jobs_by_status: dict[str, int]
    builds: int = 0  # `datasets.build` jobs on the dataset, among `jobs`
    builds_by_status: dict[str, int] = {}


@dataclass(frozen=True)
class DatasetFilter:
    owner_id: uuid.UUID | None = None
    all_owners: bool = False  # admins
    name: str | None = None  # case-insensitive substring
    tag: str | None = None


def _filtered(session: Session, query: Select[Any], f: DatasetFilter) -> Select[Any]:
    if not f.all_owners:
        query = query.where(Dataset.owner_id == f.owner_id)
    if f.name:
        query = query.where(func.lower(Dataset.name).contains(f.name.lower(), autoescape=True))
    if f.tag is not None:
        dialect = session.get_bind().dialect.name
        query = query.where(json_array_has(Dataset.tags, f.tag, dialect))
    return query


def _live_files() -> ColumnElement[bool]:
    return File.deleted_at.is_(None)


def _locked(session: Session, dataset_id: uuid.UUID) -> Dataset:
    """The dataset row, locked for the rest of the transaction; NotFound if there is none."""
    row = session.get(Dataset, dataset_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return row


class Datasets:
    """Create, read, list, update and delete datasets; add and remove their files."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def __repr__(self) -> str:
        return "Datasets()"

    # records -------------------------------------------------------------------

    def create(
        self,
        *,
        owner_id: uuid.UUID | None,
        name: str,
        description: str | None = None,
        tags: Sequence[str] = (),
    ) -> DatasetRecord:
        now = utcnow()
        row = Dataset(
            id=uuid.uuid4(),
            owner_id=owner_id,
            name=name,
            description=description,
            tags=list(dict.fromkeys(tags)),
            created_at=now,
            updated_at=now,
        )
        with transaction(self.db) as session:
            session.add(row)
            session.flush()
            return DatasetRecord.model_validate(row)

    def get(self, dataset_id: uuid.UUID) -> DatasetRecord:
        """The dataset with its file count and bytes; NotFound if there is none."""
        with self.db() as session:
            row = session.get(Dataset, dataset_id)
            if row is None:
                raise NotFound(f"no dataset with id {dataset_id}")
            return self._with_sizes(session, [row])[0]

    def find(
        self, f: DatasetFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[DatasetRecord], int]:
        """A page of datasets, newest first, and how many match."""
        with self.db() as session:
            total = session.scalar(_filtered(session, select(func.count(Dataset.id)), f)) or 0
            rows = session.scalars(
                _filtered(session, select(Dataset), f)
                .order_by(Dataset.created_at.desc(), Dataset.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return self._with_sizes(session, list(rows)), total

    def update(self, dataset_id: uuid.UUID, fields: dict[str, Any]) -> DatasetRecord:
        """Set the given fields (name, description, tags); others stay as they are."""
        with transaction(self.db) as session:
            row = _locked(session, dataset_id)
            for name in ("name", "description", "tags"):
                if name in fields:
                    value = fields[name]
                    setattr(row, name, list(dict.fromkeys(value)) if name == "tags" else value)
            row.updated_at = utcnow()
        return self.get(dataset_id)

    def delete(self, dataset_id: uuid.UUID) -> int:
        """Delete the dataset; its files stay, outside any dataset. Returns how many left it."""
        with transaction(self.db) as session:
            row = _locked(session, dataset_id)
            # Explicit rather than trusting ON DELETE SET NULL, so deleted files and
            # uploads in progress let go of the dataset as well, on every engine.
            left = len(
                session.scalars(
                    update(File)
                    .where(File.dataset_id == dataset_id)
                    .values(dataset_id=None)
                    .returning(File.id)
                ).all()
            )
            session.execute(
                update(Upload).where(Upload.dataset_id == dataset_id).values(dataset_id=None)
            )
            session.delete(row)
        return int(left or 0)

    # membership ----------------------------------------------------------------

    def add_files(self, dataset_id: uuid.UUID, file_ids: Iterable[uuid.UUID]) -> DatasetRecord:
        """Put the files in the dataset (moving them from any other). They must be live
        files of the dataset's owner: any other id is NotFound and nothing changes."""
        wanted = list(dict.fromkeys(file_ids))
        with transaction(self.db) as session:
            dataset = _locked(session, dataset_id)
            found = set(
                session.scalars(
                    select(File.id).where(
                        File.id.in_(wanted), File.owner_id == dataset.owner_id, _live_files()
                    )
                )
            )
            missing = [str(i) for i in wanted if i not in found]
            if missing:
                raise NotFound(f"no file with id {', '.join(missing[:10])}")
            now = utcnow()
            if wanted:
                session.execute(
                    update(File)
                    .where(File.id.in_(wanted))
                    .values(dataset_id=dataset_id, updated_at=now)
                )
            dataset.updated_at = now
        return self.get(dataset_id)

    def remove_file(self, dataset_id: uuid.UUID, file_id: uuid.UUID) -> DatasetRecord:
        """Take the file out of the dataset (the file itself stays). Idempotent for a file
        the owner has that is not in the dataset; NotFound for any other id."""
        with transaction(self.db) as session:
            dataset = _locked(session, dataset_id)
            stored = session.get(File, file_id)
            if (
                stored is None
                or stored.owner_id != dataset.owner_id
                or stored.deleted_at is not None
            ):
                raise NotFound(f"no file with id {file_id}")
            if stored.dataset_id == dataset_id:
                stored.dataset_id = None
                stored.updated_at = dataset.updated_at = utcnow()
        return self.get(dataset_id)

    def files(
        self, dataset_id: uuid.UUID, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[File], int]:
        """A page of the dataset's live file records (newest first) and how many it has."""
        where = (File.dataset_id == dataset_id, _live_files())
        with self.db() as session:
            total = session.scalar(select(func.count(File.id)).where(*where)) or 0
            rows = session.scalars(
                select(File)
                .where(*where)
                .order_by(File.created_at.desc(), File.id)
                .limit(limit)
                .offset(offset)
            ).all()
        return list(rows), total

    # statistics ----------------------------------------------------------------

    def stats(self, datasets: Sequence[DatasetRecord]) -> list[DatasetStats]:
        """Files, bytes and kinds of each dataset, and the jobs run on it by its owner."""
        ids = [d.id for d in datasets]
        kinds: dict[uuid.UUID, Counter[str]] = {i: Counter() for i in ids}
        members: dict[uuid.UUID, set[str]] = {i: set() for i in ids}
        with self.db() as session:
            for dataset_id, file_id, kind in session.execute(
                select(File.dataset_id, File.id, File.kind).where(
                    File.dataset_id.in_(ids), _live_files()
                )
            ):
                if dataset_id is not None:
                    kinds[dataset_id][kind or ""] += 1
                    members[dataset_id].add(str(file_id))
            jobs_by_owner = self._jobs_of(session, {d.owner_id for d in datasets})
        out = []
        for d in datasets:
            statuses: Counter[str] = Counter({status.value: 0 for status in Status})
            builds: Counter[str] = Counter({status.value: 0 for status in Status})
            for function, params, status in jobs_by_owner.get(d.owner_id, []):
                if _runs_on(params, str(d.id), members[d.id]):
                    statuses[status] += 1
                    builds[status] += function == BUILD_FUNCTION
            out.append(
                DatasetStats(
                    dataset_id=d.id,
                    name=d.name,
                    file_count=d.file_count,
                    bytes=d.bytes,
                    kinds=dict(kinds[d.id]),
                    jobs=sum(statuses.values()),
                    jobs_by_status=dict(statuses),
                    builds=sum(builds.values()),
                    builds_by_status=dict(builds),
                )
            )
        return out

    @staticmethod
    def _jobs_of(
        session: Session, owners: set[uuid.UUID | None]
    ) -> dict[uuid.UUID | None, list[tuple[str, dict[str, Any], str]]]:
        # Matching params in Python keeps this portable (SQLite JSON vs PostgreSQL
        # JSONB operators differ) and is cheap at the scale of one owner's jobs (thousands).
        # If owners come to have millions of jobs, index a `jobs.dataset_id` column instead.
        found: dict[uuid.UUID | None, list[tuple[str, dict[str, Any], str]]] = {}
        if not owners:
            return found
        for owner_id, function, params, status in session.execute(
            select(Job.owner_id, Job.function, Job.params, Job.status).where(
                Job.owner_id.in_(owners)
            )
        ):
            found.setdefault(owner_id, []).append((function, params or {}, status))
        return found

    @staticmethod
    def _with_sizes(session: Session, rows: list[Dataset]) -> list[DatasetRecord]:
        sizes = (
            {
                dataset_id: (count, total or 0)
                for dataset_id, count, total in session.execute(
                    select(File.dataset_id, func.count(File.id), func.sum(File.size))
                    .where(File.dataset_id.in_([r.id for r in rows]), _live_files())
                    .group_by(File.dataset_id)
                )
            }
            if rows
            else {}
        )
        return [
            DatasetRecord.model_validate(row).model_copy(
                update={
                    "file_count": sizes.get(row.id, (0, 0))[0],
                    "bytes": int(sizes.get(row.id, (0, 0))[1]),
                }
            )
            for row in rows
        ]


def _runs_on(params: dict[str, Any], dataset_id: str, file_ids: set[str]) -> bool:
    """Whether job params name the dataset or one of its files."""
    if str(params.get(DATASET_PARAM)) == dataset_id:
        return True
    for name in FILE_PARAMS:
        value = params.get(name)
        named = value if isinstance(value, list) else [value]
        if any(str(v) in file_ids for v in named if v is not None):
            return True
    return False
