"""File records and their bytes: every stored file is one `files` row plus one object."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.capabilities import StoredFile
from common.errors import NotFound
from common.naming import safe_name
from common.objects.base import CHUNK_SIZE, ObjectStore
from common.records import File, transaction
from common.records.models import Dataset
from common.records.types import utcnow


class _AnyOwner:
    """Sentinel for "any owner" (admins, the system): distinct from owner None (anonymous)."""

    def __repr__(self) -> str:
        return "ANY_OWNER"


ANY_OWNER = _AnyOwner()


def file_key(owner_id: uuid.UUID | None, file_id: uuid.UUID, name: str) -> str:
    return f"users/{owner_id or 'anonymous'}/files/{file_id}/{name}"


def _chunks(source: bytes | IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    if hasattr(source, "read"):
        while chunk := source.read(CHUNK_SIZE):
            yield chunk
        return
    yield from source


class Files:
    def __init__(self, db: sessionmaker[Session], objects: ObjectStore) -> None:
        self.db = db
        self.objects = objects

    def get(
        self, file_id: uuid.UUID, *, owner_id: uuid.UUID | _AnyOwner | None = ANY_OWNER
    ) -> StoredFile:
        """The file, if `owner_id` may see it; another owner's file is NotFound, not Forbidden,
        so ids do not leak. Deleted files are gone."""
        row = self.record(file_id)
        if not isinstance(owner_id, _AnyOwner) and row.owner_id != owner_id:
            raise NotFound(f"no file with id {file_id}")
        return StoredFile.model_validate(row, from_attributes=True)

    def add(
        self,
        source: bytes | IO[bytes] | Iterable[bytes],
        *,
        name: str,
        owner_id: uuid.UUID | None,
        content_type: str | None = None,
        kind: str | None = None,
        source_job_id: uuid.UUID | None = None,
        dataset_id: uuid.UUID | None = None,
        check: Callable[[str, str, int], str] | None = None,
    ) -> StoredFile:
        """Stream `source` into the store (hashing it on the way), then record it.

        `check(name, key, size) -> kind` vets the stored bytes first (user uploads: type,
        truncation, quota). The object is removed again if the check or the record
        fails, so a failure leaves neither a record without bytes nor orphaned bytes.
        """
        name = safe_name(name)
        file_id = uuid.uuid4()
        key = file_key(owner_id, file_id, name)
        try:
            # The store hashes the bytes as it writes them (one pass); a store that
            # could not is read back once.
            info = self.objects.put_stream(key, _chunks(source), content_type=content_type)
            sha256 = info.sha256 or self._sha256_of(key)
            if check is not None:
                kind = check(name, key, info.size)
            now = utcnow()
            row = File(
                id=file_id,
                owner_id=owner_id,
                name=name,
                key=key,
                size=info.size,
                sha256=sha256,
                kind=kind,
                content_type=content_type,
                source_job_id=source_job_id,
                dataset_id=dataset_id,
                created_at=now,
                updated_at=now,
            )
            with transaction(self.db) as session:
                session.add(row)
        except BaseException:
            self.objects.delete(key)
            raise
        return StoredFile.model_validate(row, from_attributes=True)

    def _sha256_of(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.objects.iter_bytes(key):
            digest.update(chunk)
        return digest.hexdigest()

    def made_by(self, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """The live files the jobs stored (`source_job_id`): what a cancelled build removes."""
        wanted = list(job_ids)
        if not wanted:
            return []
        with self.db() as session:
            return list(
                session.scalars(
                    select(File.id).where(File.source_job_id.in_(wanted), File.deleted_at.is_(None))
                )
            )

    def import_path(
        self,
        path: Path,
        *,
        owner_id: uuid.UUID | None,
        name: str | None = None,
        check: Callable[[str, str, int], str] | None = None,
    ) -> StoredFile:
        """Copy a server file (already checked by `common.imports.resolve_import_path`)
        into the store as the caller's file."""
        with open(path, "rb") as handle:
            return self.add(handle, name=name or path.name, owner_id=owner_id, check=check)

    def record(self, file_id: uuid.UUID) -> File:
        with self.db() as session:
            row = session.get(File, file_id)
        if row is None or row.deleted_at is not None:
            raise NotFound(f"no file with id {file_id}")
        return row


@dataclass(frozen=True)
class FileFilter:
    owner_id: uuid.UUID | None = None
    all_owners: bool = False
    kind: str | None = None
    dataset_id: uuid.UUID | None = None
    name_contains: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sha256: str | None = None
    size: int | None = None


def _filtered(query: Select, f: FileFilter) -> Select:  # type: ignore[type-arg]
    query = query.where(File.deleted_at.is_(None))
    if not f.all_owners:
        query = query.where(
            File.owner_id.is_(None) if f.owner_id is None else File.owner_id == f.owner_id
        )
    if f.kind is not None:
        query = query.where(File.kind == f.kind)
    if f.dataset_id is not None:
        query = query.where(File.dataset_id == f.dataset_id)
    if f.name_contains:
        escaped = f.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(File.name.ilike(f"%{escaped}%", escape="\\"))
    if f.created_after is not None:
        query = query.where(File.created_at >= f.created_after)
    if f.created_before is not None:
        query = query.where(File.created_at < f.created_before)
    if f.sha256 is not None:
        query = query.where(File.sha256 == f.sha256.lower())
    if f.size is not None:
        query = query.where(File.size == f.size)
    return query


class FileCatalog:
    """Reads and edits of file records (listing, usage, rename, move, delete)."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def find(self, f: FileFilter, *, limit: int, offset: int) -> tuple[list[File], int]:
        with self.db() as session:
            total = session.scalar(_filtered(select(func.count(File.id)), f)) or 0
            rows = session.scalars(
                _filtered(select(File), f)
                .order_by(File.created_at.desc(), File.id)
                .limit(limit)
                .offset(offset)
            ).all()
        return list(rows), total

    def usage(self, f: FileFilter) -> dict[str, Any]:
        """Bytes and files in total and by kind (and by owner when every owner is asked)."""
        with self.db() as session:
            rows = session.execute(
                _filtered(
                    select(
                        File.owner_id,
                        File.kind,
                        func.count(File.id),
                        func.coalesce(func.sum(File.size), 0),
                    ),
                    f,
                ).group_by(File.owner_id, File.kind)
            ).all()
        by_kind: dict[str, dict[str, int]] = {}
        by_owner: dict[str, dict[str, int]] = {}
        for owner, kind, count, size in rows:
            for table, label in ((by_kind, kind or "other"), (by_owner, str(owner))):
                entry = table.setdefault(label, {"bytes": 0, "files": 0})
                entry["bytes"] += int(size)
                entry["files"] += int(count)
        usage: dict[str, Any] = {
            "bytes": sum(e["bytes"] for e in by_kind.values()),
            "files": sum(e["files"] for e in by_kind.values()),
            "by_kind": by_kind,
        }
        if f.all_owners:
            usage["by_owner"] = by_owner
        return usage

    def update(self, file_id: uuid.UUID, values: dict[str, Any]) -> File:
        if "name" in values:
            values["name"] = safe_name(str(values["name"]))
        values["updated_at"] = utcnow()
        with transaction(self.db) as session:
            row = session.scalar(
                update(File)
                .where(File.id == file_id, File.deleted_at.is_(None))
                .values(**values)
                .returning(File),
                execution_options={"synchronize_session": False},
            )
        if row is None:
            raise NotFound(f"no file with id {file_id}")
        return row

    def check_dataset(
        self, dataset_id: uuid.UUID, owner_id: uuid.UUID | None, *, admin: bool = False
    ) -> None:
        """A dataset the caller may put files in (another user's answers 404)."""
        with self.db() as session:
            dataset = session.get(Dataset, dataset_id)
        if dataset is None or (not admin and dataset.owner_id != owner_id):
            raise NotFound(f"no dataset with id {dataset_id}")

    def delete(
        self,
        file_ids: list[uuid.UUID],
        objects: ObjectStore,
        *,
        owner_id: uuid.UUID | _AnyOwner | None = ANY_OWNER,
    ) -> list[uuid.UUID]:
        """Soft-delete (gone from every listing at once), then remove the objects; the
        cleanup capability finishes whatever a crash here leaves behind. With `owner_id`,
        only that owner's files are touched. Returns the ids deleted."""
        now = utcnow()
        where: list[ColumnElement[bool]] = [File.id.in_(file_ids), File.deleted_at.is_(None)]
        if not isinstance(owner_id, _AnyOwner):
            where.append(File.owner_id == owner_id)
        with transaction(self.db) as session:
            rows = session.execute(
                update(File)
                .where(*where)
                .values(deleted_at=now, updated_at=now)
                .returning(File.id, File.key)
            ).all()
        for _, key in rows:
            with contextlib.suppress(Exception):  # cleanup retries what fails here
                objects.delete(key)
        return [file_id for file_id, _ in rows]
