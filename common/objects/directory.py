"""The embedded object store: objects are files under one root directory.

Layout under the root:
- `<key>`: object content, written atomically (see `fsutil`);
- `.meta/<key>.json`: ETag and content type sidecars;
- `.uploads/<upload_id>/`: multipart uploads in progress (see `dir_multipart`);
- `.tmp/`: files being written, renamed into place when complete (same filesystem),
  and staging directories whose trees `move_tree` publishes by renaming.
Keys can never name these areas: `validate_key` refuses a first segment starting
with `.`, and every joined path is re-checked to resolve inside the root.

Unlike S3, a filesystem cannot hold both `a` and `a/b`; writing one while the other
exists raises Conflict. An object without a sidecar (published by `move_tree`, or a
file dropped in by hand) has its ETag computed from its content when asked for and its
content type implied by its name's extension. Signed URLs point at the API's own
`/api/v1/signed/...` routes (see `signing`).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from common.errors import Conflict, InvalidInput, InvalidKey, ObjectNotFound
from common.objects import fsutil, rules, signing
from common.objects.base import (
    CHUNK_SIZE,
    MD5_ETAG_LIMIT,
    ByteSource,
    MultipartUpload,
    ObjectInfo,
    ObjectPage,
    PartInfo,
)
from common.objects.dir_multipart import DirectoryUploads
from common.objects.keys import validate_key, validate_prefix
from common.objects.listing import walk_keys
from common.objects.streams import iter_chunks

DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Longest file name most filesystems allow, in bytes; longer key segments are refused.
NAME_MAX = 255
#: Temporary files older than this are leftovers of a crash, swept at start-up.
STALE_TMP_S = 24 * 3600


class DirectoryStore:
    """ObjectStore over a local directory; see the module docstring for the layout."""

    kind = "dir"

    def __init__(self, root: Path | str, *, public_url: str, signing_key: bytes) -> None:
        if not signing_key:
            raise ValueError("DirectoryStore needs a non-empty signing key for its URLs")
        self._root = Path(root).resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._meta = self._root / ".meta"
        self._tmp = self._root / ".tmp"
        self._public_url = public_url.rstrip("/")
        self._signing_key = signing_key
        self._uploads = DirectoryUploads(self._root / ".uploads", tmp_dir=self._tmp)
        fsutil.sweep_stale(self._tmp, older_than_s=STALE_TMP_S)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    # paths ---------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file for `key`, refusing anything that resolves outside the object area."""
        validate_key(key)
        if any(len(segment.encode()) > NAME_MAX for segment in key.split("/")):
            raise InvalidKey(
                f"object key {key[:100]!r} has a segment longer than {NAME_MAX} bytes, "
                "which the directory store cannot hold as a file name"
            )
        path = self._root / key
        real = path.resolve()
        if not real.is_relative_to(self._root) or real == self._root:
            raise InvalidKey(f"object key {key[:100]!r} resolves outside the store")
        if real.relative_to(self._root).parts[0].startswith("."):
            raise InvalidKey(f"object key {key[:100]!r} resolves into a reserved area")
        return path

    def _meta_path(self, key: str) -> Path:
        # Named by hash, not by key: `a` and `a.json/b` are both valid keys, and a
        # sidecar named after the key could collide with a directory of another.
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._meta / digest[:2] / f"{digest}.json"

    # writes --------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        return self.put_stream(key, data, content_type=content_type)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        with Path(path).open("rb") as f:
            return self.put_stream(key, f, content_type=content_type)

    def put_stream(
        self, key: str, stream: ByteSource, *, content_type: str | None = None
    ) -> ObjectInfo:
        dest = self._path(key)
        spooled = fsutil.spool(
            iter_chunks(stream), self._tmp, md5_up_to=MD5_ETAG_LIMIT, sha256=True
        )
        etag = spooled.digest.hex() if spooled.size <= MD5_ETAG_LIMIT else str(spooled.sha256)
        return replace(self._commit(key, dest, spooled, etag, content_type), sha256=spooled.sha256)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A new empty directory on the store's filesystem, removed with whatever is
        left in it on exit; files written there can be published by `move_tree`
        without a copy."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=self._tmp, prefix="stage-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def move_tree(self, source: Path, prefix: str) -> int:
        """Publish every file under `source` as `prefix/<relative path>` by renaming it
        (a directory whose destination does not exist yet moves whole), consuming
        `source`; returns how many objects. Durable on return: one `syncfs` covers the
        files' content, however they were written, and the renames.

        No sidecar is written: `head` computes the ETag from the content and takes the
        content type from the extension. Each object appears atomically, the tree does
        not: callers that need all-or-nothing publish a manifest afterwards. `source`
        must be on the store's filesystem (see `staging`); anything but directories and
        regular files in it, or a file name that is not a valid key segment, is refused
        before anything moves.
        """
        source = Path(source)
        if not source.is_dir() or source.is_symlink():
            raise InvalidInput(f"{source} is not a directory")
        if os.stat(source).st_dev != os.stat(self._root).st_dev:
            raise InvalidInput(f"{source} is not on the object store's filesystem")
        base = validate_key(prefix.rstrip("/"))
        count = self._check_tree(source, base)
        self._merge(source, self._path(base), base)
        fsutil.syncfs(self._root)
        return count

    def _check_tree(self, directory: Path, key: str) -> int:
        """How many files are under `directory` once each is checked to be a regular
        file or directory whose key (under `key`) is valid."""
        count = 0
        with os.scandir(directory) as entries:
            listed = list(entries)
        for entry in listed:
            child = validate_key(f"{key}/{entry.name}")
            if len(entry.name.encode()) > NAME_MAX:
                raise InvalidKey(f"object key {child[:100]!r} has a segment too long")
            if entry.is_dir(follow_symlinks=False):
                count += self._check_tree(Path(entry.path), child)
            elif entry.is_file(follow_symlinks=False):
                count += 1
            else:
                raise InvalidInput(f"{entry.path} is neither a regular file nor a directory")
        return count

    def _merge(self, source: Path, dest: Path, key: str) -> None:
        """Rename the checked tree `source` to `dest` whole, or entry by entry where
        `dest` is already a directory."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, dest)  # replaces at most an empty directory
            return
        except (FileExistsError, NotADirectoryError):
            if not dest.is_dir():
                raise self._conflict(key) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        self._path(key)  # an existing directory: it must still resolve inside the store
        with os.scandir(source) as entries:
            listed = list(entries)  # all read before any moves out
        for entry in listed:
            child = f"{key}/{entry.name}"
            target = dest / entry.name
            if entry.is_dir(follow_symlinks=False):
                self._merge(Path(entry.path), target, child)
                continue
            try:
                os.replace(entry.path, target)
            except (IsADirectoryError, NotADirectoryError):
                raise self._conflict(child) from None
            fsutil.discard(self._meta_path(child))  # it described the object replaced

    @staticmethod
    def _conflict(key: str) -> Conflict:
        return Conflict(
            f"object key {key!r}: the directory store cannot hold both a key "
            "and other keys under it as a prefix"
        )

    def _commit(
        self, key: str, dest: Path, spooled: fsutil.Spooled, etag: str, content_type: str | None
    ) -> ObjectInfo:
        """Publish a spooled file as `key`: sidecar first, then the content."""
        sidecar = fsutil.Sidecar(
            etag, spooled.size, spooled.mtime_ns, spooled.ino, content_type or DEFAULT_CONTENT_TYPE
        )
        try:
            fsutil.write_sidecar(self._meta_path(key), sidecar, self._tmp)
        except BaseException:
            fsutil.discard(spooled.path)
            raise
        fsutil.publish(spooled.path, dest, what=f"object key {key!r}")
        return self._info(key, sidecar, spooled.mtime_ns)

    @staticmethod
    def _info(key: str, sidecar: fsutil.Sidecar, mtime_ns: int) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=sidecar.size,
            etag=sidecar.etag,
            last_modified=datetime.fromtimestamp(mtime_ns / 1e9, UTC),
            content_type=sidecar.content_type,
        )

    def copy(self, src: str, dst: str) -> ObjectInfo:
        dest = self._path(dst)  # before spooling, so a bad key leaves no temp file
        source = self.head(src)
        with self._path(src).open("rb") as f:
            spooled = fsutil.spool(iter_chunks(f), self._tmp, md5_up_to=0)  # etag: the source's
        return self._commit(dst, dest, spooled, source.etag, source.content_type)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        finally:
            fsutil.discard(self._meta_path(key))
        fsutil.prune_empty_dirs(path.parent, self._root)

    def delete_prefix(self, prefix: str) -> int:
        if not validate_prefix(prefix):
            raise InvalidInput("refusing to delete with an empty prefix (the whole store)")
        keys = list(walk_keys(self._root, prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    # reads ---------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object under key {key!r}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no object under key {key!r}")
        sidecar = fsutil.read_sidecar(self._meta_path(key))
        if sidecar is None or not sidecar.describes(st):
            # Stale or missing metadata: the content is the truth, so rehash it.
            content_type = (
                sidecar.content_type
                if sidecar
                else fsutil.content_type_of(key, DEFAULT_CONTENT_TYPE)
            )
            sidecar = fsutil.Sidecar(
                fsutil.file_md5(path), st.st_size, st.st_mtime_ns, st.st_ino, content_type
            )
        return self._info(key, sidecar, st.st_mtime_ns)

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_bytes(key, start=start, end=end))

    def local_path(self, key: str) -> Path | None:
        """The object's file, for readers that need a real path (read it, never write it);
        ObjectNotFound if there is none."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object under key {key!r}")
        return path

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        rules.check_range(start, end)
        path = self._path(key)
        try:
            size = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object under key {key!r}") from None
        if not path.is_file():
            raise ObjectNotFound(f"no object under key {key!r}")
        # S3 semantics: an empty range is empty, a range starting at or past the end is
        # an error (416) unless the whole object was asked for, and the end is clipped.
        if end == start or (size == 0 and start == 0 and end is None):
            return iter(())
        if start >= size:
            raise rules.range_unsatisfiable(start, size)
        stop = size if end is None else min(size, end)
        # Errors above are raised now; the file is opened only once iteration starts,
        # so an iterator that is never consumed holds no file descriptor.
        return _read_range(key, path, start, stop, chunk_size)

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int = 1000
    ) -> ObjectPage:
        validate_prefix(prefix)
        rules.check_limit(limit)
        items: builtins.list[ObjectInfo] = []
        keys = walk_keys(self._root, prefix, start_after=start_after)
        for key in keys:
            if len(items) == limit:
                return ObjectPage(items=items, next_token=items[-1].key)
            info = self._listed(key)
            if info is not None:
                items.append(info)
        return ObjectPage(items=items, next_token=None)

    def _listed(self, key: str) -> ObjectInfo | None:
        """A listing entry (no content type, like S3's), or None if it just vanished."""
        try:
            info = self.head(key)
        except (ObjectNotFound, InvalidKey):
            return None
        return ObjectInfo(
            key=info.key, size=info.size, etag=info.etag, last_modified=info.last_modified
        )

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for key in walk_keys(self._root, prefix):
            info = self._listed(key)
            if info is not None:
                yield info

    # signed access -------------------------------------------------------------

    def _signed_url(self, path: str, params: dict[str, str], expires_s: int) -> str:
        if expires_s < 1:
            raise InvalidInput(f"expires_s must be at least 1, got {expires_s}")
        query = signing.sign(params, key=self._signing_key, expires_at=int(time.time()) + expires_s)
        return f"{self._public_url}{path}?{query}"

    def presigned_get_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        params = {"k": validate_key(key)}
        if filename:
            params["fn"] = filename
        return self._signed_url(signing.OBJECT_PATH, params, expires_s)

    def presigned_put_url(self, key: str, *, expires_s: int) -> str:
        return self._signed_url(
            signing.OBJECT_PATH, {"k": validate_key(key), "m": "PUT"}, expires_s
        )

    # multipart -----------------------------------------------------------------

    def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        self._path(key)
        return self._uploads.create(key, content_type=content_type)

    def part_url(self, key: str, upload_id: str, part_number: int, *, expires_s: int) -> str:
        params = {
            "k": validate_key(key),
            "u": upload_id,
            "n": str(rules.check_part_number(part_number)),
        }
        return self._signed_url(signing.PART_PATH, params, expires_s)

    def upload_part(
        self, key: str, upload_id: str, part_number: int, stream: ByteSource
    ) -> PartInfo:
        validate_key(key)
        return self._uploads.upload_part(key, upload_id, part_number, stream)

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        validate_key(key)
        return self._uploads.list_parts(key, upload_id)

    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        dest = self._path(key)
        assembled = self._uploads.assemble(key, upload_id, parts)
        info = self._commit(key, dest, assembled.spooled, assembled.etag, assembled.content_type)
        self._uploads.remove(upload_id)
        return replace(info, sha256=assembled.sha256)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        validate_key(key)
        self._uploads.abort(key, upload_id)

    def list_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        validate_prefix(prefix)
        return self._uploads.list(prefix)

    def ping(self) -> None:
        """The root must be a writable directory."""
        if not self._root.is_dir() or not os.access(self._root, os.W_OK | os.X_OK):
            raise OSError(f"object store directory {self._root} is not a writable directory")


def _read_range(key: str, path: Path, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
    """Yield bytes [start, stop) of the file at `path`."""
    try:
        f = path.open("rb")
    except FileNotFoundError:  # deleted since it was looked up
        raise ObjectNotFound(f"no object under key {key!r}") from None
    with f:
        f.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = f.read(min(chunk_size, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
