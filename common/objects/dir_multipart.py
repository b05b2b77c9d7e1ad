"""Multipart uploads for the directory backend, following S3's rules.

Each upload is a directory `<root>/.uploads/<upload_id>/` holding `upload.json`
(key, initiation time, content type) and one `NNNNN.part` file per part with a
`NNNNN.json` sidecar (MD5 ETag, size). Parts are written atomically, so uploading a
part number again replaces it. Completion checks the caller's (number, ETag) list
the way S3 does, then concatenates the parts into one temp file for the store to
publish; the ETag is S3's multipart form, `md5(part digests) + "-N"`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import Conflict, InvalidInput, NotFound
from common.objects import fsutil, rules
from common.objects.base import CHUNK_SIZE, ByteSource, MultipartUpload, PartInfo
from common.objects.streams import iter_chunks

# What `secrets.token_urlsafe` produces; anything else cannot name an upload, and
# checking it first keeps an upload id from ever being a path.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_RECORD = "upload.json"


@dataclass(frozen=True)
class Assembled:
    """The concatenated parts of a completed upload, ready to publish."""

    spooled: fsutil.Spooled
    etag: str
    content_type: str | None


class DirectoryUploads:
    """The `.uploads` area of a DirectoryStore. Keys arrive already validated."""

    def __init__(self, root: Path, *, tmp_dir: Path) -> None:
        self._root = root
        self._tmp = tmp_dir

    def __repr__(self) -> str:
        return f"DirectoryUploads({str(self._root)!r})"

    def create(self, key: str, *, content_type: str | None) -> str:
        upload_id = secrets.token_urlsafe(24)
        directory = self._root / upload_id
        directory.mkdir(parents=True)
        record = {
            "key": key,
            "initiated": datetime.now(UTC).isoformat(),
            "content_type": content_type,
        }
        spooled = fsutil.spool([json.dumps(record).encode()], self._tmp)
        fsutil.publish(spooled.path, directory / _RECORD, what="multipart upload record")
        return upload_id

    def _record(self, upload_id: str) -> dict[str, Any] | None:
        if not _UPLOAD_ID.fullmatch(upload_id):
            return None
        try:
            record: dict[str, Any] = json.loads((self._root / upload_id / _RECORD).read_bytes())
        except (OSError, ValueError):
            return None
        return record

    def _open(self, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        """The upload's directory and record; NotFound unless it exists for `key`."""
        record = self._record(upload_id)
        if record is None or record.get("key") != key:
            raise NotFound(f"no multipart upload {upload_id[:64]!r} for key {key!r}")
        return self._root / upload_id, record

    def upload_part(self, key: str, upload_id: str, number: int, stream: ByteSource) -> PartInfo:
        directory, _ = self._open(key, upload_id)
        rules.check_part_number(number)
        spooled = fsutil.spool(iter_chunks(stream), self._tmp)
        sidecar = fsutil.Sidecar(spooled.digest.hex(), spooled.size, spooled.mtime_ns, spooled.ino)
        # No parent creation: an upload aborted meanwhile must stay gone.
        try:
            fsutil.write_sidecar(
                directory / f"{number:05d}.json", sidecar, self._tmp, make_parents=False
            )
            fsutil.publish(
                spooled.path, directory / f"{number:05d}.part", what="part", make_parents=False
            )
        except FileNotFoundError:
            fsutil.discard(spooled.path)
            raise NotFound(f"multipart upload {upload_id!r} was aborted or completed") from None
        return PartInfo(number=number, etag=sidecar.etag, size=sidecar.size)

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        directory, _ = self._open(key, upload_id)
        parts = []
        for path in sorted(directory.glob("[0-9][0-9][0-9][0-9][0-9].part")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sidecar = fsutil.read_sidecar(path.with_suffix(".json"))
            etag = sidecar.etag if sidecar and sidecar.describes(st) else fsutil.file_md5(path)
            parts.append(PartInfo(number=int(path.stem), etag=etag, size=st.st_size))
        return parts

    def assemble(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> Assembled:
        """Check `parts` against what was uploaded and concatenate them (S3's rules)."""
        directory, record = self._open(key, upload_id)
        wanted = rules.check_completion(parts)
        stored = {part.number: part for part in self.list_parts(key, upload_id)}
        for index, (number, etag) in enumerate(wanted):
            part = stored.get(number)
            if part is None or part.etag != etag:
                raise InvalidInput(
                    f"part {number} was not uploaded, or its ETag does not "
                    f"match the one given ({etag!r})"
                )
            if index < len(wanted) - 1 and part.size < rules.MIN_PART_SIZE:
                raise InvalidInput(
                    f"part {number} is {part.size} bytes; every part but the "
                    f"last must be at least {rules.MIN_PART_SIZE} bytes (5 MiB)"
                )
        spooled = fsutil.spool(_concatenate(directory, wanted), self._tmp)
        digests = b"".join(bytes.fromhex(etag) for _, etag in wanted)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(wanted)}"
        return Assembled(spooled, etag, record.get("content_type"))

    def remove(self, upload_id: str) -> None:
        shutil.rmtree(self._root / upload_id, ignore_errors=True)

    def abort(self, key: str, upload_id: str) -> None:
        """Idempotent; an upload made for another key is left alone."""
        record = self._record(upload_id)
        if record is not None and record.get("key") == key:
            self.remove(upload_id)

    def list(self, prefix: str) -> Iterator[MultipartUpload]:
        """Uploads in progress whose key starts with `prefix`, by key then age."""
        uploads = []
        children = sorted(self._root.iterdir()) if self._root.is_dir() else []
        for directory in children:
            record = self._record(directory.name)
            if record is None or not str(record.get("key", "")).startswith(prefix):
                continue
            uploads.append(
                MultipartUpload(
                    key=record["key"],
                    upload_id=directory.name,
                    initiated=datetime.fromisoformat(record["initiated"]),
                )
            )
        uploads.sort(key=lambda u: (u.key, u.initiated))
        return iter(uploads)


def _concatenate(directory: Path, parts: list[tuple[int, str]]) -> Iterator[bytes]:
    """The parts' bytes in order, re-checking each part's MD5 as it is read.

    A part re-uploaded while the upload completes would otherwise end up in the
    object under the ETag of the part it replaced.
    """
    for number, etag in parts:
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            f = (directory / f"{number:05d}.part").open("rb")
        except FileNotFoundError:
            raise NotFound("the multipart upload was completed or aborted meanwhile") from None
        with f:
            while chunk := f.read(CHUNK_SIZE):
                md5.update(chunk)
                yield chunk
        if md5.hexdigest() != etag:
            raise Conflict(f"part {number} changed while the upload was being completed")
