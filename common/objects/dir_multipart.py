"""Multipart uploads for the directory backend, following S3's rules.

Each upload is a directory `<root>/.uploads/<upload_id>/` holding `upload.json`
(key, initiation time, content type) and one `NNNNN.part` file per part with a
`NNNNN.json` sidecar (MD5 ETag, size, and the file's inode and mtime). Parts are written
atomically, so uploading a part number again replaces it (a new inode). Completion
checks the caller's (number, ETag) list the way S3 does, then concatenates the parts
into one temp file in the kernel (`copy_file_range`), checking that each part copied is
the very file its ETag was computed over; the ETag is S3's multipart form,
`md5(part digests) + "-N"`.

The object's SHA-256 is computed while the parts arrive, not by reading the object
again: this process keeps a running digest per upload, fed part 1, 2, 3, ... as soon
as each one and all before it are stored (a part that arrives early waits on disk,
fresh in the page cache, for its turn). At completion the digest stands if it covers
exactly the parts being joined, the same files; otherwise (a part replaced after it
was hashed, parts stored by another web process, a restart) the parts are hashed while
they are joined. The digest is reported only over bytes that were hashed.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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


#: Running digests kept per process (uploads in progress here at once, at most).
MAX_RUNNING = 256

#: (inode, mtime_ns, size): which file a part was when it was hashed or copied.
Identity = tuple[int, int, int]


@dataclass(frozen=True)
class Assembled:
    """The concatenated parts of a completed upload, ready to publish."""

    spooled: fsutil.Spooled
    etag: str
    content_type: str | None
    sha256: str | None = None


@dataclass
class _RunningDigest:
    """SHA-256 over parts 1..next-1, and which files they were."""

    sha256: Any = field(default_factory=hashlib.sha256)
    next: int = 1
    hashed: dict[int, Identity] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DirectoryUploads:
    """The `.uploads` area of a DirectoryStore. Keys arrive already validated."""

    def __init__(self, root: Path, *, tmp_dir: Path) -> None:
        self._root = root
        self._tmp = tmp_dir
        self._running: collections.OrderedDict[str, _RunningDigest] = collections.OrderedDict()
        self._guard = threading.Lock()

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
        self._advance(upload_id, directory, start=number == 1)
        return PartInfo(number=number, etag=sidecar.etag, size=sidecar.size)

    # the running SHA-256 ------------------------------------------------------------

    def _advance(self, upload_id: str, directory: Path, *, start: bool = False) -> None:
        """Hash every stored part that continues this process's digest of the upload
        (one is started when part 1 is stored here)."""
        with self._guard:
            running = self._running.get(upload_id)
            if running is None and start:
                running = self._running[upload_id] = _RunningDigest()
                while len(self._running) > MAX_RUNNING:
                    self._running.popitem(last=False)
        if running is None:
            return
        with running.lock:
            while (identity := _hash_part(directory, running.next, running.sha256)) is not None:
                running.hashed[running.next] = identity
                running.next += 1

    def _digest(self, upload_id: str, directory: Path, joined: dict[int, Identity]) -> str | None:
        """The running SHA-256 if it covers exactly the parts `joined` (1..N, the same
        files), else None."""
        self._advance(upload_id, directory)
        with self._guard:
            running = self._running.pop(upload_id, None)
        if (
            running is None
            or running.hashed != joined
            or sorted(joined) != list(range(1, len(joined) + 1))
        ):
            return None
        return str(running.sha256.hexdigest())

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
        spooled, joined = _concatenate(directory, wanted, self._tmp)
        sha256 = self._digest(upload_id, directory, joined) or _sha256_of(spooled.path)
        digests = b"".join(bytes.fromhex(etag) for _, etag in wanted)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(wanted)}"
        return Assembled(spooled, etag, record.get("content_type"), sha256)

    def remove(self, upload_id: str) -> None:
        with self._guard:
            self._running.pop(upload_id, None)
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


def _identity(st: os.stat_result) -> Identity:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _hash_part(directory: Path, number: int, digest: Any) -> Identity | None:
    """Feed part `number` to `digest` if it is stored (whole: parts appear by rename);
    its identity, or None if it is not there (yet)."""
    try:
        f = (directory / f"{number:05d}.part").open("rb")
    except FileNotFoundError:
        return None
    with f:
        identity = _identity(os.fstat(f.fileno()))
        while chunk := f.read(CHUNK_SIZE * 4):
            digest.update(chunk)
    return identity


def _concatenate(
    directory: Path, parts: list[tuple[int, str]], tmp_dir: Path
) -> tuple[fsutil.Spooled, dict[int, Identity]]:
    """The parts joined into a new fsynced temp file by the kernel, and which file each
    part was. Each copied file must be the one its sidecar's ETag describes: a part
    re-uploaded while the upload completes would otherwise end up in the object under
    the ETag of the part it replaced."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="w-", suffix=".tmp")
    joined: dict[int, Identity] = {}
    try:
        for number, etag in parts:
            joined[number] = _copy_part(directory, number, etag, fd)
        os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        fsutil.discard(Path(name))
        raise
    os.close(fd)
    spooled = fsutil.Spooled(Path(name), st.st_size, b"", st.st_mtime_ns, st.st_ino)
    return spooled, joined


def _copy_part(directory: Path, number: int, etag: str, out: int) -> Identity:
    try:
        f = (directory / f"{number:05d}.part").open("rb")
    except FileNotFoundError:
        raise NotFound("the multipart upload was completed or aborted meanwhile") from None
    with f:
        st = os.fstat(f.fileno())
        sidecar = fsutil.read_sidecar(directory / f"{number:05d}.json")
        if sidecar is None or not sidecar.describes(st) or sidecar.etag != etag:
            raise Conflict(f"part {number} changed while the upload was being completed")
        _copy(f.fileno(), out, st.st_size, number)
    return _identity(st)


def _copy(source: int, out: int, size: int, number: int) -> None:
    """`size` bytes from `source` appended to `out`, in the kernel where it can."""
    left = size
    while left > 0:
        try:
            copied = os.copy_file_range(source, out, left)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise  # ENOSPC and real I/O errors are the caller's
            copied = os.write(out, os.read(source, min(left, CHUNK_SIZE * 4)))
        if copied == 0:
            raise Conflict(f"part {number} shrank while the upload was being completed")
        left -= copied


def _sha256_of(path: Path) -> str:
    """The joined file's SHA-256, when the running digest could not be used."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE * 4):
            digest.update(chunk)
    return digest.hexdigest()
