"""RangedReader: a seekable file over object byte ranges; metadata cost does not grow
with the object's size."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from common.objects.directory import DirectoryStore
from common.objects.ranged import RangedReader
from functions.microscopy.readers import read_metadata
from functions.microscopy.synthetic import write_timelapse


def test_reads_and_seeks_like_a_file(dir_store: DirectoryStore) -> None:
    data = random.Random(1).randbytes(200_000)
    dir_store.put_bytes("r/blob", data)
    expected = io.BytesIO(data)
    rng = random.Random(2)
    with RangedReader(dir_store, "r/blob", read_ahead=4096) as fh:
        assert fh.size == len(data) and fh.seekable() and fh.readable()
        for _ in range(300):
            whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
            offset = {
                io.SEEK_SET: rng.randrange(0, len(data) + 10),
                io.SEEK_CUR: rng.randrange(-100, 100),
                io.SEEK_END: -rng.randrange(0, 5000),
            }[whence]
            if whence == io.SEEK_CUR and fh.tell() + offset < 0:
                continue
            assert fh.seek(offset, whence) == expected.seek(offset, whence)
            n = rng.choice([1, 2, 8, 100, 5000, 20_000])
            assert fh.read(n) == expected.read(n)
            assert fh.tell() == expected.tell()
        fh.seek(0)
        assert fh.read() == data
        with pytest.raises(OSError, match="negative"):
            fh.seek(-1)
    with pytest.raises(ValueError, match="closed"):
        fh.read(1)


def test_small_reads_share_one_request(dir_store: DirectoryStore) -> None:
    dir_store.put_bytes("r/small", bytes(range(256)) * 100)
    with RangedReader(dir_store, "r/small", read_ahead=1024) as fh:
        parts = [fh.read(4) for _ in range(200)]
        assert b"".join(parts) == (bytes(range(256)) * 100)[:800]
        assert fh.requests == 1 and fh.bytes_fetched == 1024


def _metadata_cost(store: DirectoryStore, path: Path, key: str) -> tuple[int, int, int]:
    store.put_file(key, path)
    with RangedReader(store, key) as fh:
        meta = read_metadata(fh, name=path.name)
        assert meta.file_type == "ome-tiff" and meta.n_frames == 6 and meta.n_fovs == 2
        return fh.bytes_fetched, fh.requests, fh.size


def test_metadata_cost_does_not_grow_with_file_size(
    dir_store: DirectoryStore, tmp_path: Path
) -> None:
    costs = {}
    for size in (64, 256, 1024):
        paths = write_timelapse(tmp_path / str(size), fovs=2, frames=6, size=size, seed=3)
        costs[size] = _metadata_cost(dir_store, paths.image, f"t/{size}.ome.tif")
    (small, _, small_size), (mid, _, mid_size), (large, large_requests, large_size) = (
        costs[64],
        costs[256],
        costs[1024],
    )
    assert large_size > 100 * small_size and large_size > 10 * mid_size
    # 256x the pixels, (about) the same bytes read: headers, IFDs and OME-XML only.
    assert large <= mid * 1.05 and large <= 2 * small
    assert large < large_size / 50 and large_requests <= 20
