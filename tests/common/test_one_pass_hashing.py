"""SHA-256 computed on the way in, never claimed for bytes it was not computed over:
streamed puts, multipart completion from the parts as they were stored (and the fallback
when a part changed afterwards), and ranged read-back for stores that could not."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import InvalidInput
from common.objects import DirectoryStore, ObjectStore, dir_join, dir_multipart
from common.objects.base import MD5_ETAG_LIMIT
from common.objects.readback import prefetched, sha256_of
from common.objects.rules import MIN_PART_SIZE
from common.objects.spooling import PIPELINE_AFTER, spool

MIB = 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob(size: int, seed: int) -> bytes:
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def _chunks(data: bytes, size: int = MIB) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


@pytest.mark.parametrize("size", [0, 1000, PIPELINE_AFTER + 3 * MIB + 7])
def test_spool_hashes_what_it_writes(tmp_path: Path, size: int) -> None:
    data = _blob(size, 1)
    spooled = spool(_chunks(data), tmp_path, sha256=True)
    assert spooled.path.read_bytes() == data
    assert spooled.sha256 == _sha(data) and spooled.size == size
    assert spooled.digest == hashlib.md5(data, usedforsecurity=False).digest()


def test_spool_stops_md5_past_its_limit_and_reports_write_errors(tmp_path: Path) -> None:
    data = _blob(PIPELINE_AFTER + 2 * MIB, 2)
    assert spool(_chunks(data), tmp_path, md5_up_to=MIB, sha256=True).digest == b""

    def failing() -> Iterator[bytes]:
        yield from _chunks(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    before = set(tmp_path.iterdir())
    with pytest.raises(OSError) as raised:
        spool(failing(), tmp_path)
    assert raised.value.errno == errno.ENOSPC  # as raised, for the 507 mapping
    assert set(tmp_path.iterdir()) == before  # the temp file is gone


def test_put_stream_reports_the_sha256_it_computed(object_store: ObjectStore) -> None:
    for size in (5, MD5_ETAG_LIMIT + MIB):
        data = _blob(size, 3)
        info = object_store.put_stream(f"hash/{size}", _chunks(data))
        assert info.sha256 == _sha(data) and info.size == size
        if size <= MD5_ETAG_LIMIT:  # S3's single-upload ETag on both backends
            assert info.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        assert object_store.head(f"hash/{size}").etag == info.etag


def _upload_in_order(store: ObjectStore, key: str, parts: list[bytes], order: list[int]) -> str:
    upload_id = store.create_multipart(key)
    etags = {n: store.upload_part(key, upload_id, n, parts[n - 1]).etag for n in order}
    info = store.complete_multipart(key, upload_id, sorted(etags.items()))
    assert store.get_bytes(key) == b"".join(parts)
    return str(info.sha256)


def test_directory_multipart_sha256_from_the_parts_as_stored(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "objects", public_url="http://x", signing_key=b"k" * 32)
    parts = [_blob(MIN_PART_SIZE, n) for n in range(3)] + [b"tail"]
    whole = _sha(b"".join(parts))
    assert _upload_in_order(store, "mp/in-order", parts, [1, 2, 3, 4]) == whole
    assert _upload_in_order(store, "mp/out-of-order", parts, [3, 4, 1, 2]) == whole
    # the part hashed first is replaced afterwards: the running digest no longer covers
    # the files joined, so the joined bytes are hashed instead
    upload_id = store.create_multipart("mp/replaced")
    for n, part in enumerate(parts, 1):
        store.upload_part("mp/replaced", upload_id, n, part)
    changed = _blob(MIN_PART_SIZE, 99)
    etags = [(1, store.upload_part("mp/replaced", upload_id, 1, changed).etag)]
    etags += [(p.number, p.etag) for p in store.list_parts("mp/replaced", upload_id)[1:]]
    info = store.complete_multipart("mp/replaced", upload_id, etags)
    assert info.sha256 == _sha(changed + b"".join(parts[1:]))


def test_directory_multipart_joins_each_part_once_as_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are joined and hashed while they arrive, in any arrival order that ends with
    every part stored: completion neither reads nor hashes them again; a part replaced
    after it was joined makes completion join afresh, in one pass."""
    store = DirectoryStore(tmp_path / "objects", public_url="http://x", signing_key=b"k" * 32)
    parts = [_blob(MIN_PART_SIZE, n) for n in range(3)] + [b"tail"]
    appended: list[int] = []
    fresh_joins: list[int] = []
    real_append, real_join = dir_join.Joiner.append, dir_multipart._join

    def counting_append(self: dir_join.Joiner, directory: Path, number: int, *a: object) -> object:
        identity = real_append(self, directory, number, *a)  # type: ignore[arg-type]
        if identity is not None:
            appended.append(number)
        return identity

    def counting_join(*args: object) -> object:
        fresh_joins.append(1)
        return real_join(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dir_join.Joiner, "append", counting_append)
    monkeypatch.setattr(dir_multipart, "_join", counting_join)
    whole = _sha(b"".join(parts))
    for order in ([1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3]):
        appended.clear()
        assert _upload_in_order(store, f"mp/{order}", parts, order) == whole
        assert sorted(appended) == [1, 2, 3, 4], order  # each part read (and hashed) once
    assert fresh_joins == []
    assert list((tmp_path / "objects" / ".uploads").iterdir()) == []  # nothing left behind

    upload_id = store.create_multipart("mp/replaced")
    for n, part in enumerate(parts, 1):
        store.upload_part("mp/replaced", upload_id, n, part)
    changed = _blob(MIN_PART_SIZE, 98)
    etags = [(1, store.upload_part("mp/replaced", upload_id, 1, changed).etag)]
    etags += [(p.number, p.etag) for p in store.list_parts("mp/replaced", upload_id)[1:]]
    assert store.complete_multipart("mp/replaced", upload_id, etags).sha256 == _sha(
        changed + b"".join(parts[1:])
    )
    assert fresh_joins == [1]
    assert store.get_bytes("mp/replaced") == changed + b"".join(parts[1:])


def test_directory_part_etags_name_the_stored_file_not_its_content(tmp_path: Path) -> None:
    """The same bytes stored twice get two ETags, so completing with the first names a
    file that is gone: by S3's rules, that part was not uploaded."""
    store = DirectoryStore(tmp_path / "objects", public_url="http://x", signing_key=b"k" * 32)
    upload_id = store.create_multipart("mp/etags")
    first = store.upload_part("mp/etags", upload_id, 1, b"same bytes").etag
    second = store.upload_part("mp/etags", upload_id, 1, b"same bytes").etag
    assert first != second and len(first) == len(second) == 40
    with pytest.raises(InvalidInput):
        store.complete_multipart("mp/etags", upload_id, [(1, first)])
    info = store.complete_multipart("mp/etags", upload_id, [(1, second)])
    assert info.sha256 == _sha(b"same bytes") and store.get_bytes("mp/etags") == b"same bytes"


def test_ranged_read_back_is_in_order(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 11)
    fetches: list[tuple[int, int]] = []

    def fetch(start: int, stop: int) -> bytes:
        fetches.append((start, stop))
        return data[start:stop]

    assert b"".join(prefetched(fetch, 5, len(data), range_bytes=MIB, in_flight=3)) == data[5:]
    assert sorted(fetches)[0] == (5, 5 + MIB) and len(fetches) == 4
    assert sha256_of(lambda a, b: data[a:b], len(data)) == _sha(data)
