"""File records and their bytes: every stored file is one `files` row plus one object."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.capabilities import StoredFile
from common.errors import NotFound
from common.naming import safe_name
from common.objects.base import CHUNK_SIZE
from common.records import File, transaction
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


class _Hashing:
    """Counts and hashes bytes as they stream past on their way to the store."""

    def __init__(self, source: bytes | IO[bytes] | Iterable[bytes]) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in _chunks(self.source):
            self.sha256.update(chunk)
            self.size += len(chunk)
            yield chunk


class Files:
    def __init__(self, db: sessionmaker[Session], objects: Any) -> None:
        self.db = db
        self.objects = objects

    def get(self, file_id: uuid.UUID, *, owner_id: uuid.UUID | Any | None = ANY_OWNER
            ) -> StoredFile:
        """The file, if `owner_id` may see it; another owner's file is NotFound, not Forbidden,
        so ids do not leak."""
        with self.db() as session:
            row = session.get(File, file_id)
        if row is None or (not isinstance(owner_id, _AnyOwner) and row.owner_id != owner_id):
            raise NotFound(f"no file with id {file_id}")
        return StoredFile.model_validate(row, from_attributes=True)

    def add(
        self, source: bytes | IO[bytes] | Iterable[bytes], *, name: str,
        owner_id: uuid.UUID | None, content_type: str | None = None, kind: str | None = None,
        source_job_id: uuid.UUID | None = None,
    ) -> StoredFile:
        """Stream `source` into the store (hashing it on the way), then record it.

        The object is written first and removed again if the record cannot be written,
        so a failure leaves neither a record without bytes nor orphaned bytes.
        """
        name = safe_name(name)
        file_id = uuid.uuid4()
        key = file_key(owner_id, file_id, name)
        hashing = _Hashing(source)
        self.objects.put_stream(key, iter(hashing), content_type=content_type)
        now = utcnow()
        row = File(
            id=file_id, owner_id=owner_id, name=name, key=key, size=hashing.size,
            sha256=hashing.sha256.hexdigest(), kind=kind, content_type=content_type,
            source_job_id=source_job_id, created_at=now, updated_at=now,
        )
        try:
            with transaction(self.db) as session:
                session.add(row)
        except BaseException:
            self.objects.delete(key)
            raise
        return StoredFile.model_validate(row, from_attributes=True)

    def record(self, file_id: uuid.UUID) -> File:
        with self.db() as session:
            row = session.get(File, file_id)
        if row is None:
            raise NotFound(f"no file with id {file_id}")
        return row

    def list_ids(self, owner_id: uuid.UUID | None) -> list[uuid.UUID]:
        with self.db() as session:
            return list(session.scalars(select(File.id).where(File.owner_id == owner_id)))
