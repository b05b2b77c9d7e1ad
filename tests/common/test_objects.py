"""Contract tests for the object stores: every test runs against both backends.

The `object_store` fixture (tests/support/s3.py) is parametrised over the directory
store and an S3Store on a real SeaweedFS server. Tests that only make sense for one
backend (signed-URL verification for the directory backend, HTTP use of presigned
URLs for S3, filesystem escapes) ask for `dir_store` or `s3_store` directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from common.errors import BadSignature, Conflict, InvalidInput, InvalidKey, NotFound, ObjectNotFound
from common.objects import DirectoryStore, ObjectStore, make_store, signing
from common.objects.disposition import content_disposition
from common.objects.keys import MAX_KEY_BYTES, validate_key
from common.objects.rules import MIN_PART_SIZE
from common.objects.s3 import S3Store
from common.settings import Settings
from tests.support.s3 import (
    DIR_PUBLIC_URL,
    DIR_SIGNING_KEY,
    S3Server,
    empty_and_remove_bucket,
    s3_settings_env,
    unique_bucket,
)

MIB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (so misplaced ranges are caught)."""
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


# keys -----------------------------------------------------------------------------

BAD_KEYS = {
    "empty": "",
    "parent": "../x",
    "absolute": "/abs",
    "inner-parent": "a/../b",
    "dot": "a/./b",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "newline": "a\nb",
    "double-slash": "a//b",
    "trailing-slash": "a/b/",
    "reserved": ".meta/x",
    "too-long": "k/" + "x" * MAX_KEY_BYTES,
}


@pytest.mark.parametrize(
    "key",
    [
        "users/1/files/2/résumé final.pdf",
        "a/.hidden",
        "a/b..c",
        "jobs/9/out/tile_0_0.png",
        "x" * MAX_KEY_BYTES,
    ],
)
def test_validate_key_accepts_ordinary_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_validate_key_rejects_and_says_why(key: str) -> None:
    with pytest.raises(InvalidKey, match="invalid object key"):
        validate_key(key)


def test_multibyte_key_length_counts_utf8_bytes() -> None:
    with pytest.raises(InvalidKey, match="1024 bytes"):
        validate_key("é" * 513)  # 513 characters, 1026 bytes


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_bad_keys_are_refused_and_nothing_is_written(object_store: ObjectStore, key: str) -> None:
    attempts: list[Any] = [
        lambda: object_store.put_bytes(key, b"x"),
        lambda: object_store.put_stream(key, iter([b"x"])),
        lambda: object_store.get_bytes(key),
        lambda: object_store.head(key),
        lambda: object_store.delete(key),
        lambda: object_store.copy("ok", key),
        lambda: object_store.presigned_get_url(key, expires_s=60),
        lambda: object_store.presigned_put_url(key, expires_s=60),
        lambda: object_store.create_multipart(key),
    ]
    object_store.put_bytes("ok", b"fine")
    for attempt in attempts:
        with pytest.raises(InvalidKey):
            attempt()
    assert [info.key for info in object_store.iter_objects()] == ["ok"]
    assert list(object_store.list_multipart_uploads()) == []
    if isinstance(object_store, DirectoryStore):
        assert list((object_store.root / ".tmp").iterdir()) == []


def test_dir_store_writes_nothing_for_bad_keys(dir_store: DirectoryStore) -> None:
    for key in BAD_KEYS.values():
        with pytest.raises(InvalidKey):
            dir_store.put_bytes(key, b"x")
    files = [Path(r) / f for r, _, names in os.walk(dir_store.root.parent) for f in names]
    assert files == []


def test_dir_store_refuses_keys_that_escape_through_symlinks(
    dir_store: DirectoryStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (dir_store.root / "link").symlink_to(outside)
    (dir_store.root / "sneaky").symlink_to(dir_store.root / ".meta", target_is_directory=True)
    for key in ("link/x", "sneaky/x"):
        with pytest.raises(InvalidKey, match="resolves"):
            dir_store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        dir_store.get_bytes("link/x")
    assert list(outside.iterdir()) == []


def test_dir_store_cannot_hold_a_key_and_keys_below_it(dir_store: DirectoryStore) -> None:
    dir_store.put_bytes("a", b"1")
    with pytest.raises(Conflict):
        dir_store.put_bytes("a/b", b"2")
    dir_store.put_bytes("c/d", b"3")
    with pytest.raises(Conflict):
        dir_store.put_bytes("c", b"4")
    assert dir_store.get_bytes("a") == b"1"
    assert dir_store.get_bytes("c/d") == b"3"


def test_dir_store_metadata_never_collides_and_survives_outside_edits(
    dir_store: DirectoryStore,
) -> None:
    dir_store.put_bytes("a", b"1", content_type="text/plain")
    dir_store.put_bytes("a.json/b", b"2")  # a sidecar named after "a" would be in the way
    assert dir_store.head("a").content_type == "text/plain"
    (dir_store.root / "a").write_bytes(b"changed behind the store's back")
    assert dir_store.head("a").etag == md5(b"changed behind the store's back")
    (dir_store.root / "dropped.png").write_bytes(b"no sidecar")  # type from the name
    assert dir_store.head("dropped.png").content_type == "image/png"
    with pytest.raises(InvalidKey, match="255 bytes"):
        dir_store.put_bytes("x/" + "y" * 256, b"too long a file name")


# whole objects ----------------------------------------------------------------------


def test_put_and_get_bytes(object_store: ObjectStore) -> None:
    data = pattern(100_000)
    info = object_store.put_bytes("users/1/files/a.bin", data, content_type="image/tiff")
    assert (info.key, info.size, info.etag) == ("users/1/files/a.bin", len(data), md5(data))
    assert info.content_type == "image/tiff"
    assert object_store.get_bytes("users/1/files/a.bin") == data
    head = object_store.head("users/1/files/a.bin")
    assert (head.size, head.etag, head.content_type) == (len(data), md5(data), "image/tiff")
    assert head.last_modified.tzinfo is not None
    assert object_store.exists("users/1/files/a.bin")


def test_empty_object_and_default_content_type(object_store: ObjectStore) -> None:
    info = object_store.put_bytes("empty", b"")
    assert (info.size, info.etag) == (0, md5(b""))
    assert info.content_type == "application/octet-stream"
    assert object_store.get_bytes("empty") == b""
    assert list(object_store.iter_bytes("empty")) == []


def test_overwrite_replaces_content(object_store: ObjectStore) -> None:
    object_store.put_bytes("k", b"first version")
    info = object_store.put_bytes("k", b"second")
    assert object_store.get_bytes("k") == b"second"
    assert object_store.head("k").etag == info.etag == md5(b"second")


def test_put_file(object_store: ObjectStore, tmp_path: Path) -> None:
    data = pattern(3 * MIB + 17, seed=1)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    info = object_store.put_file("files/source.bin", source, content_type="application/x-test")
    assert info.size == len(data)
    assert object_store.head("files/source.bin").content_type == "application/x-test"
    assert md5(object_store.get_bytes("files/source.bin")) == md5(data)


def test_put_binary_stream(object_store: ObjectStore) -> None:
    data = pattern(2 * MIB + 5, seed=2)
    info = object_store.put_stream("s/binary", io.BytesIO(data))
    assert info.size == len(data)
    assert object_store.get_bytes("s/binary") == data


def _chunks(count: int, base: bytes) -> Iterator[bytes]:
    """`count` distinct chunks the size of `base`, generated on demand."""
    tail = memoryview(base)[4:]
    for i in range(count):
        yield i.to_bytes(4, "big") + tail


def test_put_stream_from_generator_is_streamed(object_store: ObjectStore) -> None:
    # boto3 holds up to two 8 MiB transfer chunks (and a copy of the one being read),
    # so S3 needs a longer stream to show that memory does not grow with it.
    count, limit_mib = (12, 4) if object_store.kind == "dir" else (64, 40)
    base = pattern(MIB, seed=3)
    expected = hashlib.md5(usedforsecurity=False)
    for chunk in _chunks(count, base):
        expected.update(chunk)
    tracemalloc.start()
    try:
        info = object_store.put_stream("s/generated", _chunks(count, base))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == count * MIB
    assert peak < limit_mib * MIB, f"{peak / MIB:.1f} MiB held for a {count} MiB stream"
    got = hashlib.md5(usedforsecurity=False)
    sizes = []
    for chunk in object_store.iter_bytes("s/generated", chunk_size=MIB):
        sizes.append(len(chunk))
        got.update(chunk)
    assert got.hexdigest() == expected.hexdigest()
    assert sum(sizes) == count * MIB and max(sizes) <= MIB


def test_a_failing_stream_leaves_nothing_behind(object_store: ObjectStore) -> None:
    object_store.put_bytes("s/kept", b"old content")

    def broken() -> Iterator[bytes]:
        yield from _chunks(9, pattern(MIB))  # past the S3 multipart threshold
        raise RuntimeError("the client went away")

    for key in ("s/new", "s/kept"):
        with pytest.raises(RuntimeError, match="went away"):
            object_store.put_stream(key, broken())
    assert not object_store.exists("s/new")
    assert object_store.get_bytes("s/kept") == b"old content"
    assert list(object_store.list_multipart_uploads()) == []
    if isinstance(object_store, DirectoryStore):
        assert list((object_store.root / ".tmp").iterdir()) == []


def test_dir_store_concurrent_writers_never_tear_or_mislabel(dir_store: DirectoryStore) -> None:
    contents = [bytes([n]) * (64 * 1024 + n) for n in range(8)]

    def write(data: bytes) -> None:
        for _ in range(5):
            dir_store.put_bytes("race", data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, contents))
    data = dir_store.get_bytes("race")
    assert data in contents
    assert dir_store.head("race").etag == md5(data)


# byte ranges (S3 semantics: clipped end, 416 for a start at or past the end) --------

RANGES = {
    "start": (0, 10),
    "middle": (100, 900),
    "end": (1000, None),
    "clipped-end": (1000, 5000),
    "whole": (0, None),
    "last-byte": (1023, 1024),
    "empty": (5, 5),
}


@pytest.mark.parametrize(("start", "end"), RANGES.values(), ids=RANGES.keys())
def test_byte_ranges(object_store: ObjectStore, start: int, end: int | None) -> None:
    data = pattern(1024, seed=4)
    object_store.put_bytes("r", data)
    expected = data[start:end]
    assert object_store.get_bytes("r", start=start, end=end) == expected
    assert b"".join(object_store.iter_bytes("r", start=start, end=end, chunk_size=64)) == expected


@pytest.mark.parametrize(("start", "end"), [(1024, None), (2000, 3000), (-1, None), (10, 5)])
def test_unsatisfiable_or_invalid_ranges(
    object_store: ObjectStore, start: int, end: int | None
) -> None:
    object_store.put_bytes("r", pattern(1024))
    with pytest.raises(InvalidInput):
        object_store.get_bytes("r", start=start, end=end)


def test_missing_objects(object_store: ObjectStore) -> None:
    assert not object_store.exists("nope/x")
    with pytest.raises(ObjectNotFound):
        object_store.head("nope/x")
    with pytest.raises(ObjectNotFound):
        object_store.get_bytes("nope/x")
    with pytest.raises(ObjectNotFound):
        object_store.iter_bytes("nope/x", start=3, end=3)  # raised eagerly, before iterating
    with pytest.raises(ObjectNotFound):
        object_store.copy("nope/x", "dst")


def test_delete_is_idempotent(object_store: ObjectStore) -> None:
    object_store.put_bytes("d/x", b"1")
    object_store.delete("d/x")
    object_store.delete("d/x")
    object_store.delete("never/existed")
    assert not object_store.exists("d/x")
    assert object_store.list("d/").items == []


def test_delete_prefix(object_store: ObjectStore) -> None:
    for key in ("a/1", "a/2", "a/b/3", "ab/4", "b/5"):
        object_store.put_bytes(key, key.encode())
    assert object_store.delete_prefix("a/") == 3
    assert [info.key for info in object_store.iter_objects()] == ["ab/4", "b/5"]
    assert object_store.delete_prefix("a/") == 0
    with pytest.raises(InvalidInput, match="empty prefix"):
        object_store.delete_prefix("")


def test_copy(object_store: ObjectStore) -> None:
    data = pattern(50_000, seed=5)
    object_store.put_bytes("src/a", data, content_type="text/csv")
    info = object_store.copy("src/a", "dst/b")
    assert (info.key, info.size, info.etag) == ("dst/b", len(data), md5(data))
    assert object_store.head("dst/b").content_type == "text/csv"
    assert object_store.get_bytes("dst/b") == data
    assert object_store.get_bytes("src/a") == data


# listing --------------------------------------------------------------------------


def test_list_paginates_in_order_within_the_prefix(object_store: ObjectStore) -> None:
    keys = [f"p/k{i:02d}" for i in range(25)]
    for key in reversed(keys):
        object_store.put_bytes(key, key.encode())
    for other in ("q/x", "p0", "o/p/k"):
        object_store.put_bytes(other, b"other")
    pages, token = [], None
    while True:
        page = object_store.list("p/", start_after=token, limit=10)
        pages.append([info.key for info in page.items])
        token = page.next_token
        if token is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [key for page in pages for key in page] == keys
    first = object_store.list("p/", limit=10).items[0]
    assert (first.size, first.etag) == (5, md5(b"p/k00"))
    assert object_store.list("p/k2").next_token is None
    assert [i.key for i in object_store.list("p/k2").items] == [f"p/k2{i}" for i in range(5)]


def test_list_order_is_bytewise(object_store: ObjectStore) -> None:
    keys = ["s/a0", "s/a/b", "s/a1", "s/a/c/d", "s/é", "s/z", "s/A", "s/b"]
    for key in keys:
        object_store.put_bytes(key, b"x")
    assert [info.key for info in object_store.iter_objects("s/")] == sorted(keys)
    page = object_store.list("s/", start_after="s/a/b", limit=2)
    assert [info.key for info in page.items] == ["s/a/c/d", "s/a0"]
    assert page.next_token == "s/a0"


def test_dir_store_orders_punctuation_before_slash_like_aws(dir_store: DirectoryStore) -> None:
    # AWS orders by UTF-8 bytes, so "a-c" < "a/b" < "a0". (SeaweedFS lists in
    # directory-tree order here, so the contract test above avoids such siblings.)
    keys = ["s/a0", "s/a/b", "s/a-c", "s/a/c/d", "s/a.d"]
    for key in keys:
        dir_store.put_bytes(key, b"x")
    assert [info.key for info in dir_store.iter_objects("s/")] == sorted(keys)
    page = dir_store.list("s/", start_after="s/a.d", limit=2)
    assert [info.key for info in page.items] == ["s/a/b", "s/a/c/d"]


def test_list_rejects_bad_limits(object_store: ObjectStore) -> None:
    for limit in (0, 1001):
        with pytest.raises(InvalidInput):
            object_store.list("", limit=limit)


# multipart ------------------------------------------------------------------------


def _etag_of_parts(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f"{md5(digests)}-{len(parts)}"


def _part_etag_matches(store: ObjectStore, etag: str, data: bytes) -> bool:
    """S3's part ETag is the part's MD5; the directory store's is an opaque token naming
    the stored file (40 hex digits: it hashes each byte once, for the SHA-256)."""
    if store.kind == "dir":
        return re.fullmatch(r"[0-9a-f]{40}", etag) is not None
    return etag == md5(data)


def test_multipart_upload(object_store: ObjectStore) -> None:
    parts = [pattern(5 * MIB, seed=n) for n in (1, 2, 3)] + [b"tail" * 100]
    upload_id = object_store.create_multipart("mp/big.bin", content_type="image/tiff")
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", upload_id)
    object_store.upload_part("mp/big.bin", upload_id, 2, b"wrong content, replaced below")
    if object_store.kind == "s3":
        time.sleep(1.05)  # S3 times parts to the second; let the replacement be newer
    etags = {}
    for number, data in zip((1, 2, 4), (parts[0], parts[1], parts[3]), strict=True):
        etags[number] = object_store.upload_part("mp/big.bin", upload_id, number, data).etag
    streamed = object_store.upload_part(
        "mp/big.bin", upload_id, 3, iter([parts[2][:MIB], parts[2][MIB:]])
    )
    etags[3] = streamed.etag
    assert (streamed.number, streamed.size) == (3, 5 * MIB)
    assert all(_part_etag_matches(object_store, etags[n], parts[n - 1]) for n in etags)
    listed = object_store.list_parts("mp/big.bin", upload_id)
    assert [(p.number, p.etag, p.size) for p in listed] == [
        (n, etags[n], len(parts[n - 1])) for n in (1, 2, 3, 4)
    ]
    assert [u.upload_id for u in object_store.list_multipart_uploads("mp/")] == [upload_id]

    info = object_store.complete_multipart(
        "mp/big.bin", upload_id, [(n, etags[n]) for n in (1, 2, 3, 4)]
    )
    whole = b"".join(parts)
    assert info.size == len(whole)
    part_etags = b"".join(bytes.fromhex(etags[n]) for n in (1, 2, 3, 4))
    assert info.etag == f"{md5(part_etags)}-4"
    assert info.sha256 in (None, hashlib.sha256(whole).hexdigest())
    if object_store.kind == "s3":
        assert info.etag == _etag_of_parts(parts)
    assert object_store.head("mp/big.bin").content_type == "image/tiff"
    boundary = 5 * MIB
    assert (
        object_store.get_bytes("mp/big.bin", start=boundary - 3, end=boundary + 3)
        == (whole[boundary - 3 : boundary + 3])
    )
    assert md5(object_store.get_bytes("mp/big.bin")) == md5(whole)
    assert list(object_store.list_multipart_uploads()) == []


def test_multipart_completion_follows_s3_rules(object_store: ObjectStore) -> None:
    key = "mp/rules.bin"
    upload_id = object_store.create_multipart(key)
    e1 = object_store.upload_part(key, upload_id, 1, pattern(MIN_PART_SIZE)).etag
    e2 = object_store.upload_part(key, upload_id, 2, b"small part two").etag
    e3 = object_store.upload_part(key, upload_id, 3, b"small part three").etag
    bad = {
        "wrong etag": [(1, "0" * 32), (2, e2)],
        "missing part": [(1, e1), (5, e2)],
        "out of order": [(2, e2), (1, e1)],
        "too-small middle part": [(1, e1), (2, e2), (3, e3)],
        "no parts": [],
    }
    for why, parts in bad.items():
        with pytest.raises(InvalidInput):
            object_store.complete_multipart(key, upload_id, parts)
        assert not object_store.exists(key), why
    # A failed completion leaves the upload in place; a valid list then completes it.
    info = object_store.complete_multipart(key, upload_id, [(1, f'"{e1}"'), (2, e2)])
    assert info.size == MIN_PART_SIZE + len(b"small part two")


def test_multipart_abort_and_listing(object_store: ObjectStore) -> None:
    ids = {key: object_store.create_multipart(key) for key in ("up/b", "up/a", "other/x")}
    object_store.upload_part("up/a", ids["up/a"], 1, b"data")
    assert [u.key for u in object_store.list_multipart_uploads("up/")] == ["up/a", "up/b"]
    object_store.abort_multipart("up/a", ids["up/a"])
    assert [u.key for u in object_store.list_multipart_uploads("up/")] == ["up/b"]
    with pytest.raises(NotFound):
        object_store.list_parts("up/a", ids["up/a"])
    with pytest.raises(NotFound):
        object_store.upload_part("up/a", ids["up/a"], 1, b"late")
    object_store.abort_multipart("up/a", ids["up/a"])  # idempotent, like delete
    object_store.abort_multipart("up/b", "no-such-upload-id-at-all")
    assert [u.key for u in object_store.list_multipart_uploads("up/")] == ["up/b"]
    with pytest.raises(NotFound):
        object_store.complete_multipart("up/a", ids["up/a"], [(1, md5(b"data"))])
    assert not object_store.exists("up/a")
    for number in (0, 10_001):
        with pytest.raises(InvalidInput):
            object_store.upload_part("up/b", ids["up/b"], number, b"x")


def test_dir_store_refuses_upload_ids_that_are_paths(dir_store: DirectoryStore) -> None:
    upload_id = dir_store.create_multipart("k")
    for bad in ("../.meta", "..", "/etc", f"{upload_id}/../{upload_id}"):
        with pytest.raises(NotFound):
            dir_store.upload_part("k", bad, 1, b"x")
    with pytest.raises(NotFound):  # an upload id only works with the key it was made for
        dir_store.upload_part("other", upload_id, 1, b"x")


# signed URLs: directory backend ---------------------------------------------------


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_dir_signed_get_url(dir_store: DirectoryStore) -> None:
    url = dir_store.presigned_get_url("users/1/a b.tif", expires_s=60, filename="résumé.tif")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == DIR_PUBLIC_URL
    assert parts.path == "/api/v1/signed/object"
    query = _query(url)
    assert set(query) == {"k", "fn", "e", "s"}
    signed = signing.verify_get_object(query, key=DIR_SIGNING_KEY)
    assert (signed.key, signed.filename) == ("users/1/a b.tif", "résumé.tif")
    assert signing.verify(query, key=DIR_SIGNING_KEY) == {
        "k": "users/1/a b.tif",
        "fn": "résumé.tif",
    }


def test_dir_signed_urls_detect_tampering_and_expiry(dir_store: DirectoryStore) -> None:
    query = _query(dir_store.presigned_get_url("a/b", expires_s=60))
    expires_at = int(query["e"])
    for changed in (
        {"k": "a/c"},
        {"e": str(expires_at + 3600)},
        {"s": query["s"][:-2] + "AA"},
        {"fn": "added.txt"},
    ):
        with pytest.raises(BadSignature):
            signing.verify({**query, **changed}, key=DIR_SIGNING_KEY)
    for missing in ("s", "e"):
        with pytest.raises(BadSignature, match="not signed"):
            signing.verify({k: v for k, v in query.items() if k != missing}, key=DIR_SIGNING_KEY)
    with pytest.raises(BadSignature):
        signing.verify(query, key=b"another key")
    assert signing.verify(query, key=DIR_SIGNING_KEY, now=expires_at) == {"k": "a/b"}
    with pytest.raises(BadSignature, match="expired"):
        signing.verify(query, key=DIR_SIGNING_KEY, now=expires_at + 1)


def test_dir_signed_urls_are_bound_to_method_and_route(dir_store: DirectoryStore) -> None:
    get = _query(dir_store.presigned_get_url("a/b", expires_s=60))
    put_url = dir_store.presigned_put_url("a/b", expires_s=60)
    put = _query(put_url)
    assert urlsplit(put_url).path == "/api/v1/signed/object" and put["m"] == "PUT"
    assert signing.verify_put_object(put, key=DIR_SIGNING_KEY) == "a/b"
    with pytest.raises(BadSignature):
        signing.verify_put_object(get, key=DIR_SIGNING_KEY)  # a GET URL cannot PUT
    with pytest.raises(BadSignature):
        signing.verify_put_object({**get, "m": "PUT"}, key=DIR_SIGNING_KEY)
    with pytest.raises(BadSignature):
        signing.verify_get_object(put, key=DIR_SIGNING_KEY)  # nor a PUT URL GET

    upload_id = dir_store.create_multipart("a/b")
    part_url = dir_store.part_url("a/b", upload_id, 7, expires_s=60)
    assert urlsplit(part_url).path == "/api/v1/signed/part"
    part = _query(part_url)
    assert signing.verify_put_part(part, key=DIR_SIGNING_KEY) == signing.SignedPart(
        "a/b", upload_id, 7
    )
    for verify_other in (signing.verify_get_object, signing.verify_put_object):
        with pytest.raises(BadSignature):
            verify_other(part, key=DIR_SIGNING_KEY)
    with pytest.raises(BadSignature):
        signing.verify_put_part(put, key=DIR_SIGNING_KEY)


def test_sign_refuses_reserved_names_and_empty_keys() -> None:
    with pytest.raises(ValueError, match="reserved"):
        signing.sign({"s": "x"}, key=b"k", expires_at=1)
    with pytest.raises(ValueError, match="empty"):
        signing.sign({"k": "x"}, key=b"", expires_at=1)


def test_content_disposition() -> None:
    assert content_disposition("report.pdf") == 'attachment; filename="report.pdf"'
    value = content_disposition('résumé "final".pdf')
    assert value.startswith("attachment; filename=\"resume _final_.pdf\"; filename*=UTF-8''")
    assert unquote(value.split("''", 1)[1]) == 'résumé "final".pdf'
    assert "\r" not in content_disposition("a\r\nSet-Cookie: x=1") and "\n" not in (
        content_disposition("a\r\nSet-Cookie: x=1")
    )


# presigned URLs: S3, used over real HTTP ------------------------------------------


def test_s3_presigned_get_and_put(s3_store: S3Store) -> None:
    s3_store.put_bytes("p/get.bin", b"fetched over http")
    with httpx.Client(timeout=30) as http:
        response = http.get(s3_store.presigned_get_url("p/get.bin", expires_s=60))
        assert response.status_code == 200 and response.content == b"fetched over http"
        named = http.get(
            s3_store.presigned_get_url("p/get.bin", expires_s=60, filename="résumé.bin")
        )
        assert named.status_code == 200
        assert named.headers["content-disposition"] == content_disposition("résumé.bin")
        put_url = s3_store.presigned_put_url("p/put.bin", expires_s=60)
        assert http.put(put_url, content=b"uploaded over http").status_code == 200
        assert s3_store.get_bytes("p/put.bin") == b"uploaded over http"
        tampered = put_url.replace("p/put.bin", "p/other.bin")
        assert http.put(tampered, content=b"x").status_code == 403
    assert not s3_store.exists("p/other.bin")


def test_s3_part_urls_upload_parts_over_http(s3_store: S3Store) -> None:
    parts = [pattern(MIN_PART_SIZE, seed=9), b"last part"]
    upload_id = s3_store.create_multipart("p/multi.bin")
    etags = []
    with httpx.Client(timeout=60) as http:
        for number, data in enumerate(parts, start=1):
            url = s3_store.part_url("p/multi.bin", upload_id, number, expires_s=60)
            response = http.put(url, content=data)
            assert response.status_code == 200, response.text
            etags.append(response.headers["etag"])
    info = s3_store.complete_multipart("p/multi.bin", upload_id, list(enumerate(etags, 1)))
    assert info.etag == _etag_of_parts(parts)
    assert s3_store.get_bytes("p/multi.bin", start=MIN_PART_SIZE) == b"last part"


# construction ---------------------------------------------------------------------


def test_make_store_picks_the_backend(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APERTURE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("APERTURE_SECRET_KEY", "s" * 40)
    store = make_store(Settings())
    assert isinstance(store, DirectoryStore) and store.kind == "dir"
    assert store.root == (tmp_path / "objects").resolve()
    store.ping()

    bucket = unique_bucket()
    for name, value in s3_settings_env(s3_server, bucket).items():
        monkeypatch.setenv(name, value)
    s3 = make_store(Settings())
    assert isinstance(s3, S3Store) and s3.bucket == bucket
    s3.ensure_bucket()
    try:
        s3.ping()
        s3.put_bytes("k", b"v")
        assert s3.get_bytes("k") == b"v"
    finally:
        empty_and_remove_bucket(s3)


def test_move_tree_publishes_a_staged_tree_by_renaming(dir_store: DirectoryStore) -> None:
    with dir_store.staging() as stage:
        contents = {}
        for n in range(30):
            path = stage / "tree" / str(n // 10) / f"{n}.jpeg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([n]) * (n + 1))
            contents[f"slides/s/dzi/{n // 10}/{n}.jpeg"] = path.read_bytes()
        inode = (stage / "tree" / "0" / "0.jpeg").stat().st_ino
        assert dir_store.move_tree(stage / "tree", "slides/s/dzi") == 30
        assert not (stage / "tree").exists()  # consumed, not copied
    assert (dir_store.root / "slides/s/dzi/0/0.jpeg").stat().st_ino == inode
    assert {o.key for o in dir_store.iter_objects("slides/")} == set(contents)
    for key, data in contents.items():
        assert dir_store.get_bytes(key) == data
        info = dir_store.head(key)
        assert (info.size, info.etag, info.content_type) == (len(data), md5(data), "image/jpeg")
    assert list((dir_store.root / ".tmp").iterdir()) == []


def test_move_tree_merges_into_existing_objects(dir_store: DirectoryStore) -> None:
    dir_store.put_bytes("p/keep.png", b"kept", content_type="image/png")
    dir_store.put_bytes("p/a/replaced.jpeg", b"old", content_type="text/plain")
    with dir_store.staging() as stage:
        (stage / "a").mkdir()
        (stage / "a" / "replaced.jpeg").write_bytes(b"new")
        (stage / "a" / "added.bin").write_bytes(b"added")
        assert dir_store.move_tree(stage, "p/") == 2
    assert dir_store.get_bytes("p/keep.png") == b"kept"
    replaced = dir_store.head("p/a/replaced.jpeg")
    # the old object's metadata goes with it
    assert (replaced.etag, replaced.content_type) == (md5(b"new"), "image/jpeg")
    assert dir_store.head("p/a/added.bin").content_type == "application/octet-stream"


def test_move_tree_refuses_bad_trees_before_moving_anything(
    dir_store: DirectoryStore, tmp_path: Path
) -> None:
    dir_store.put_bytes("taken", b"a key where the tree needs a directory")
    with dir_store.staging() as stage:
        (stage / "ok.jpeg").write_bytes(b"x")
        (stage / "link").symlink_to(tmp_path)
        with pytest.raises(InvalidInput, match="neither"):
            dir_store.move_tree(stage, "q")
        (stage / "link").unlink()
        (stage / "bad\nname").write_bytes(b"x")
        with pytest.raises(InvalidKey):
            dir_store.move_tree(stage, "q")
        (stage / "bad\nname").unlink()
        for prefix in ("", "../q", ".meta/q"):
            with pytest.raises(InvalidKey):
                dir_store.move_tree(stage, prefix)
        assert list(dir_store.iter_objects("q")) == []
        with pytest.raises(Conflict):
            dir_store.move_tree(stage, "taken")
        assert (stage / "ok.jpeg").exists()
    assert [o.key for o in dir_store.iter_objects()] == ["taken"]
    with pytest.raises(InvalidInput, match="not a directory"):
        dir_store.move_tree(tmp_path / "missing", "q")


def test_staging_is_removed_with_its_contents(dir_store: DirectoryStore) -> None:
    with pytest.raises(RuntimeError), dir_store.staging() as stage:
        (stage / "partial" / "output").mkdir(parents=True)
        (stage / "partial" / "output" / "0_0.jpeg").write_bytes(b"x")
        raise RuntimeError("the build failed")
    assert not stage.exists()
    assert list((dir_store.root / ".tmp").iterdir()) == []


def test_stale_staging_directories_are_swept_at_start(tmp_path: Path) -> None:
    from common.objects import DirectoryStore

    root = tmp_path / "objects"
    store = DirectoryStore(root, public_url="http://127.0.0.1", signing_key=b"k")
    with store.staging() as fresh:
        stale = root / ".tmp" / "stage-crashed"
        (stale / "slide_files" / "0").mkdir(parents=True)
        (stale / "slide_files" / "0" / "0_0.jpeg").write_bytes(b"x")
        day_ago = time.time() - 2 * 24 * 3600
        os.utime(stale, (day_ago, day_ago))
        DirectoryStore(root, public_url="http://127.0.0.1", signing_key=b"k")
        assert not stale.exists()
        assert fresh.is_dir()  # in use by a running job
