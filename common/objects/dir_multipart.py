"""Multipart uploads for the directory backend, following S3's rules.

Each upload is a directory `<root>/.uploads/<upload_id>/` holding `upload.json`
(key, initiation time, content type) and one `NNNNN.part` file per part with a
`NNNNN.json` sidecar (ETag, size, and the file's inode and mtime). Parts are written
atomically, so uploading a part number again replaces it (a new inode). Completion
checks the caller's (number, ETag) list the way S3 does; the object's ETag is S3's
multipart form, `md5(part ETags) + "-N"`.

A part's ETag is opaque, as S3 allows: a random token naming the stored file (40 hex
digits, so never mistaken for an MD5), not a digest of its content. Each byte is
hashed once, for the object's SHA-256: the parts are joined and hashed while they
arrive (see `dir_join.Chain`: part 1, 2, 3, ... as soon as each one and all before it
are stored), so completion only checks that the chain holds exactly the parts named,
the same files, and flushes it. Otherwise (parts out of order at the end, a part
replaced after it was joined, parts stored by another web process, a restart) the parts
are joined and hashed in one pass at completion.

Durability: parts and their sidecars are not fsynced (a power failure can lose a part
or shorten it; the sizes and sidecars show it, and the client sends it again); a
completed object is fsynced before it is published.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import Conflict, InvalidInput, NotFound
from common.objects import fsutil, rules
from common.objects.base import ByteSource, MultipartUpload, PartInfo
from common.objects.dir_join import Chain, Identity, Joiner, identity_of, part_path
from common.objects.streams import iter_chunks

# What `secrets.token_urlsafe` produces; anything else cannot name an upload, and
# checking it first keeps an upload id from ever being a path.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_RECORD = "upload.json"


#: Chains kept per process (uploads in progress here at once, at most).
MAX_RUNNING = 256


@dataclass(frozen=True)
class Assembled:
    """The concatenated parts of a completed upload, ready to publish."""

    spooled: fsutil.Spooled
    etag: str
    content_type: str | None
    sha256: str | None = None


class DirectoryUploads:
    """The `.uploads` area of a DirectoryStore. Keys arrive already validated."""

    def __init__(self, root: Path, *, tmp_dir: Path) -> None:
        self._root = root
        self._tmp = tmp_dir
        self._running: collections.OrderedDict[str, Chain] = collections.OrderedDict()
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
        spooled = fsutil.spool(iter_chunks(stream), self._tmp, md5_up_to=0, durable=False)
        etag = secrets.token_hex(20)  # names this stored file (see the module docstring)
        sidecar = fsutil.Sidecar(etag, spooled.size, spooled.mtime_ns, spooled.ino)
        # No parent creation: an upload aborted meanwhile must stay gone.
        try:
            fsutil.write_sidecar(
                directory / f"{number:05d}.json",
                sidecar,
                self._tmp,
                make_parents=False,
                durable=False,
            )
            fsutil.publish(
                spooled.path,
                part_path(directory, number),
                what="part",
                make_parents=False,
                durable=False,
            )
        except FileNotFoundError:
            fsutil.discard(spooled.path)
            raise NotFound(f"multipart upload {upload_id!r} was aborted or completed") from None
        self._advance(upload_id, directory, start=number == 1)
        return PartInfo(number=number, etag=sidecar.etag, size=sidecar.size)

    # the chain: parts joined and hashed as they arrive ------------------------------------

    def _advance(self, upload_id: str, directory: Path, *, start: bool = False) -> None:
        """Join every stored part that continues this process's chain of the upload (one
        is started when part 1 is stored here)."""
        dropped: list[Chain] = []
        with self._guard:
            chain = self._running.get(upload_id)
            if chain is None and start:
                try:
                    chain = self._running[upload_id] = Chain(directory)
                except FileNotFoundError:
                    return  # aborted meanwhile
                dropped = self._prune()
        for old in dropped:
            old.discard()
        if chain is not None:
            chain.advance(wait=False)

    def _prune(self) -> list[Chain]:
        """Chains to drop (called under the guard): those whose upload is gone (completed
        or aborted through another process), then the oldest past `MAX_RUNNING`."""
        gone = [u for u, chain in self._running.items() if not chain.directory.is_dir()]
        dropped = [self._running.pop(u) for u in gone]
        while len(self._running) > MAX_RUNNING:
            dropped.append(self._running.popitem(last=False)[1])
        return dropped

    def _take_chain(
        self, upload_id: str, directory: Path, wanted: list[tuple[int, str]]
    ) -> tuple[fsutil.Spooled, str] | None:
        """The chain's joined file and SHA-256 if it holds exactly the parts `wanted`
        (1..N, the very files their ETags name), else None."""
        with self._guard:
            chain = self._running.pop(upload_id, None)
        if chain is None:
            return None
        try:
            chain.advance(wait=True)
            expected = {n: _checked_identity(directory, n, etag) for n, etag in wanted}
        except BaseException:
            chain.discard()
            raise
        if list(expected) != list(range(1, len(wanted) + 1)):
            chain.discard()
            return None
        return chain.take(expected)

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        directory, _ = self._open(key, upload_id)
        parts = []
        for path in sorted(directory.glob("[0-9][0-9][0-9][0-9][0-9].part")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sidecar = fsutil.read_sidecar(path.with_suffix(".json"))
            # A stale sidecar (a crash between the two renames): the content's MD5,
            # which a client can check against its own bytes.
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
        joined = self._take_chain(upload_id, directory, wanted)
        spooled, sha256 = joined or _join(directory, wanted, self._tmp)
        digests = b"".join(bytes.fromhex(etag) for _, etag in wanted)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(wanted)}"
        return Assembled(spooled, etag, record.get("content_type"), sha256)

    def remove(self, upload_id: str) -> None:
        with self._guard:
            chain = self._running.pop(upload_id, None)
        if chain is not None:
            chain.discard()
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


def _checked_identity(directory: Path, number: int, etag: str) -> Identity:
    """The identity of part `number` as stored now, which must be the file `etag` names."""
    try:
        st = part_path(directory, number).stat()
    except FileNotFoundError:
        raise NotFound("the multipart upload was completed or aborted meanwhile") from None
    _check_part(directory, number, etag)(st)
    return identity_of(st)


def _check_part(directory: Path, number: int, etag: str) -> Any:
    """A check that a part file (its stat) is the one its sidecar's ETag `etag` describes:
    a part re-uploaded while the upload completes would otherwise end up in the object
    under the ETag of the part it replaced."""

    def check(st: os.stat_result) -> None:
        sidecar = fsutil.read_sidecar(directory / f"{number:05d}.json")
        if sidecar is None or not sidecar.describes(st) or sidecar.etag != etag:
            # A stale sidecar's ETag is the content's MD5 (see list_parts).
            if sidecar is not None and sidecar.describes(st):
                raise Conflict(f"part {number} changed while the upload was being completed")
            if fsutil.file_md5(part_path(directory, number)) != etag:
                raise Conflict(f"part {number} changed while the upload was being completed")

    return check


def _join(
    directory: Path, parts: list[tuple[int, str]], tmp_dir: Path
) -> tuple[fsutil.Spooled, str]:
    """The parts joined into a new fsynced temp file and its SHA-256, in one pass."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    joiner = Joiner(tmp_dir)
    try:
        for number, etag in parts:
            if joiner.append(directory, number, _check_part(directory, number, etag)) is None:
                raise NotFound("the multipart upload was completed or aborted meanwhile")
        return joiner.finish()
    except BaseException:
        joiner.discard()
        raise
