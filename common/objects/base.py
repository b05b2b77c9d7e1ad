"""The object-store contract shared by the directory and S3 backends.

Keys are `/`-separated relative paths (`users/{owner}/files/{file_id}/{name}`).
Every backend validates keys with `validate_key` so nothing can address outside
the store, and every backend passes the same contract tests
(`tests/common/test_objects.py`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

#: Bytes per chunk when streaming reads and writes.
CHUNK_SIZE = 1024 * 1024

#: What a store accepts as content: bytes, a binary file object, or an iterable of
#: byte chunks (a generator, say), read chunk by chunk.
ByteSource = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


#: Streams up to this size get S3's single-upload ETag (the content's MD5); longer ones
#: an opaque ETag (S3: the multipart form; the directory store: the SHA-256 hex), as
#: the S3 backend switches to a multipart upload there.
MD5_ETAG_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None
    #: The content's SHA-256 (hex) when the store computed it on the way in (`put_stream`,
    #: `complete_multipart` where it could); None when it did not.
    sha256: str | None = None


@dataclass(frozen=True)
class ObjectPage:
    items: list[ObjectInfo]
    next_token: str | None  # pass back as `start_after`; None when there is no more


@dataclass(frozen=True)
class PartInfo:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class MultipartUpload:
    key: str
    upload_id: str
    initiated: datetime


class ObjectStore(Protocol):
    """Put, get, list and sign access to objects under validated keys.

    Semantics follow S3 in both backends: an object's content type defaults to
    `application/octet-stream`; its ETag is the MD5 hex of the content for a single
    upload up to `MD5_ETAG_LIMIT` (longer streams get an opaque ETag: S3's multipart
    form `md5-of-part-md5s-N`, the directory store's SHA-256 hex);
    listing is in UTF-8 byte order and its items carry no content type. Invalid
    keys raise InvalidKey before anything is read or written. Stores are
    synchronous; call them from async code through a thread.
    """

    kind: str  # "dir" | "s3"

    # whole objects
    def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> ObjectInfo: ...
    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo: ...
    def put_stream(
        self, key: str, stream: ByteSource, *, content_type: str | None = None
    ) -> ObjectInfo: ...
    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the object; `end=None` reads to the end.

        As in S3, an `end` past the object is clipped, `start == end` gives b"", and a
        `start` at or past the end (of a non-empty range) raises InvalidInput.
        """

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Stream bytes [start, end) in chunks without holding the object in memory.

        Missing objects and bad ranges raise here, before iteration starts.
        """

    def local_path(self, key: str) -> Path | None:
        """The object's own file, for readers that need a path (read it, never write
        it), or None where objects have no local file (S3)."""

    def head(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFound."""

    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix` (not ""); return how many."""

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = 1000
    ) -> ObjectPage: ...
    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def copy(self, src: str, dst: str) -> ObjectInfo: ...

    # signed access (directory backend: URLs served by the API itself)
    def presigned_get_url(
        self, key: str, *, expires_s: int, filename: str | None = None
    ) -> str: ...
    def presigned_put_url(self, key: str, *, expires_s: int) -> str: ...

    # multipart
    def create_multipart(self, key: str, *, content_type: str | None = None) -> str: ...
    def part_url(self, key: str, upload_id: str, part_number: int, *, expires_s: int) -> str: ...
    def upload_part(
        self, key: str, upload_id: str, part_number: int, stream: ByteSource
    ) -> PartInfo: ...
    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]: ...
    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        """Join the parts (number, ETag), ascending; all but the last at least 5 MiB.

        A part list that breaks S3's rules raises InvalidInput and leaves the upload
        open; an unknown upload raises NotFound.
        """

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Idempotent, like delete: an unknown or finished upload is not an error."""

    def list_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        """Uploads in progress whose key starts with `prefix`, by key then age."""

    def ping(self) -> None:
        """Raise if the store cannot be reached (readiness probe)."""
