"""Resumable multipart uploads up to tens of gigabytes.

`start` plans the parts and hands out one URL per part (presigned S3 `UploadPart`, or the
API's own signed part endpoint for the directory store); the client PUTs parts, in any
order and again after a dropped connection; `complete` assembles them and verifies the
result (declared size, SHA-256, content type) before it becomes a file record. A file
that fails verification is removed again: it never becomes a usable record.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.capabilities import StoredFile
from common.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, TooLarge
from common.files import Files, file_key
from common.naming import safe_name
from common.objects import readback
from common.objects.access import open_stored
from common.objects.base import ObjectInfo, ObjectStore, PartInfo
from common.records import File, transaction
from common.records.models import Upload
from common.records.types import utcnow
from common.settings import Settings
from common.sniff import check_name, identify

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum part count


def plan_parts(size: int) -> tuple[int, int]:
    """(part size, part count) for `size` bytes: whole MiB parts, at least 5 MiB, at most
    10,000 of them."""
    if size < 1:
        raise InvalidInput("size must be at least 1 byte")
    part_size = max(MIN_PART_SIZE, math.ceil(size / MAX_PARTS / MIB) * MIB)
    return part_size, math.ceil(size / part_size)


@dataclass(frozen=True)
class PlannedUpload:
    upload: Upload
    part_urls: list[tuple[int, str]]


class Uploads:
    def __init__(self, files: Files, settings: Settings) -> None:
        self.files = files
        self.db: sessionmaker[Session] = files.db
        self.objects: ObjectStore = files.objects
        self.settings = settings

    # usage and quota -------------------------------------------------------------------

    def used_bytes(self, owner_id: uuid.UUID | None) -> int:
        with self.db() as session:
            return int(
                session.scalar(
                    select(func.coalesce(func.sum(File.size), 0)).where(
                        File.owner_id == owner_id, File.deleted_at.is_(None)
                    )
                )
                or 0
            )

    def check_quota(self, owner_id: uuid.UUID | None, extra: int) -> None:
        quota = self.settings.storage_quota_bytes
        used = self.used_bytes(owner_id)
        if used + extra > quota:
            raise QuotaExceeded(
                f"this would use {used + extra} bytes of a {quota}-byte quota ({used} in use)"
            )

    def vet(self, owner_id: uuid.UUID | None):  # type: ignore[no-untyped-def]
        """A `check(name, key, size) -> kind` for `Files.add`: content type and structure
        against the name, and the owner's quota with the new bytes counted."""

        def check(name: str, key: str, size: int) -> str:
            with open_stored(self.objects, key, size) as stream:
                kind = identify(name, stream, size)
            self.check_quota(owner_id, size)
            return kind

        return check

    def import_file(
        self, path: Path, *, owner_id: uuid.UUID | None, name: str | None = None
    ) -> StoredFile:
        """Copy a server file (resolved by `common.imports.resolve_import_path`) in as the
        owner's file, with the same checks as an upload."""
        return self.files.import_path(path, owner_id=owner_id, name=name, check=self.vet(owner_id))

    # the life of an upload ---------------------------------------------------------------

    def start(
        self,
        *,
        owner_id: uuid.UUID | None,
        name: str,
        size: int,
        content_type: str | None,
        sha256: str | None,
        dataset_id: uuid.UUID | None,
    ) -> PlannedUpload:
        name = safe_name(name)
        check_name(name)
        if size > self.settings.max_upload_bytes:
            raise TooLarge(
                f"{size} bytes is more than the {self.settings.max_upload_bytes}-"
                "byte limit for one file"
            )
        part_size, part_count = plan_parts(size)
        if sha256 is not None and (
            len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())
        ):
            raise InvalidInput("sha256 must be 64 hexadecimal characters")
        self.check_quota(owner_id, size)
        file_id = uuid.uuid4()
        key = file_key(owner_id, file_id, name)
        store_upload_id = self.objects.create_multipart(key, content_type=content_type)
        now = utcnow()
        upload = Upload(
            id=uuid.uuid4(),
            owner_id=owner_id,
            name=name,
            size=size,
            content_type=content_type,
            sha256=sha256.lower() if sha256 else None,
            dataset_id=dataset_id,
            file_id=file_id,
            key=key,
            store_upload_id=store_upload_id,
            part_size=part_size,
            part_count=part_count,
            status="open",
            created_at=now,
            updated_at=now,
        )
        with transaction(self.db) as session:
            session.add(upload)
        return PlannedUpload(upload, self.part_urls(upload))

    def part_urls(self, upload: Upload) -> list[tuple[int, str]]:
        ttl = self.settings.upload_url_ttl_s
        return [
            (n, self.objects.part_url(upload.key, upload.store_upload_id, n, expires_s=ttl))
            for n in range(1, upload.part_count + 1)
        ]

    def get(self, upload_id: uuid.UUID, *, owner_id: uuid.UUID | None) -> Upload:
        """The upload, if it is the caller's (another user's answers 404, admins included)."""
        with self.db() as session:
            upload = session.get(Upload, upload_id)
        if upload is None or upload.owner_id != owner_id:
            raise NotFound(f"no upload with id {upload_id}")
        return upload

    def stored_parts(self, upload: Upload) -> list[PartInfo]:
        if upload.status != "open":
            return []
        return list(self.objects.list_parts(upload.key, upload.store_upload_id))

    def abort(self, upload: Upload) -> None:
        self._claim(upload, "aborted")
        self.objects.abort_multipart(upload.key, upload.store_upload_id)

    def complete(
        self, upload: Upload, parts: Sequence[tuple[int, str]], *, sha256: str | None = None
    ) -> StoredFile:
        """Join the parts and record the file once it checks out; `sha256` (if given) must
        agree with one declared at the start and is verified the same way."""
        declared = sha256.lower() if sha256 else upload.sha256
        if upload.sha256 and declared != upload.sha256:
            raise InvalidInput(
                f"the SHA-256 given at completion ({declared}) is not the one declared "
                f"at the start ({upload.sha256})"
            )
        numbers = [number for number, _ in parts]
        if numbers != sorted(set(numbers)):
            raise InvalidInput("parts must be listed once each, in ascending part-number order")
        if numbers != list(range(1, upload.part_count + 1)):
            raise InvalidInput(
                f"all {upload.part_count} parts must be listed (got "
                f"{len(numbers)}); the plan has part numbers 1 to "
                f"{upload.part_count}"
            )
        self._claim(upload, "completing")
        try:
            info = self.objects.complete_multipart(upload.key, upload.store_upload_id, list(parts))
        except Exception:
            self._set_status(upload.id, "open")  # nothing assembled: the client may retry
            raise
        with self._removed_on_failure(upload):
            return self._verify_and_record(upload, info, declared)

    # internals ---------------------------------------------------------------------------

    def _claim(self, upload: Upload, status: str) -> None:
        """open -> `status`, or Conflict: two completions (or a completion and an abort)
        of one upload can never both proceed."""
        with transaction(self.db) as session:
            moved = session.scalar(
                update(Upload)
                .where(Upload.id == upload.id, Upload.status == "open")
                .values(status=status, updated_at=utcnow())
                .returning(Upload.id)
            )
        if moved is None:
            raise Conflict(f"the upload is {self._status(upload.id)}, not open")

    def _status(self, upload_id: uuid.UUID) -> str:
        with self.db() as session:
            return str(session.scalar(select(Upload.status).where(Upload.id == upload_id)))

    def _set_status(self, upload_id: uuid.UUID, status: str) -> None:
        with transaction(self.db) as session:
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id)
                .values(status=status, updated_at=utcnow())
            )

    @contextmanager
    def _removed_on_failure(self, upload: Upload):  # type: ignore[no-untyped-def]
        try:
            yield
        except BaseException:
            self.objects.delete(upload.key)
            self._set_status(upload.id, "rejected")
            raise

    def _verify_and_record(
        self, upload: Upload, info: ObjectInfo, declared: str | None
    ) -> StoredFile:
        """Size, SHA-256 (as `declared`, when it was), type and quota of the joined object.

        The SHA-256 is the one the store computed from the parts as they were stored
        (the directory store, parts through this API), or else the object is read back
        with several ranged reads in flight (S3: the parts went to S3 directly, and
        per-part checksums do not give the whole object's SHA-256). The type and
        truncation checks read only what they need."""
        if info.size != upload.size:
            raise InvalidInput(
                f"the parts add up to {info.size} bytes but the upload declared {upload.size}"
            )
        sha256 = info.sha256 or readback.sha256_of(
            lambda start, end: self.objects.get_bytes(upload.key, start=start, end=end),
            info.size,
        )
        if declared and declared != sha256:
            raise InvalidInput(f"the content's SHA-256 is {sha256}, not the declared {declared}")
        kind = self.vet(upload.owner_id)(upload.name, upload.key, info.size)
        now = utcnow()
        row = File(
            id=upload.file_id,
            owner_id=upload.owner_id,
            name=upload.name,
            key=upload.key,
            size=info.size,
            sha256=sha256,
            kind=kind,
            content_type=upload.content_type,
            dataset_id=upload.dataset_id,
            created_at=now,
            updated_at=now,
        )
        with transaction(self.db) as session:
            session.add(row)
            session.execute(
                update(Upload)
                .where(Upload.id == upload.id)
                .values(status="completed", updated_at=now)
            )
        return StoredFile.model_validate(row, from_attributes=True)
