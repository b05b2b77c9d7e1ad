"""The handle LRU and the byte-bounded cache."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from common.errors import UnsupportedFile
from functions.slides.handles import HandleCache
from functions.slides.tile_cache import ByteLRU


def test_byte_lru_evicts_least_recently_used() -> None:
    cache: ByteLRU[bytes] = ByteLRU(10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"1234")
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.bytes == 8
    cache.put("huge", b"x" * 11)  # larger than the budget: not kept
    assert cache.get("huge") is None and cache.bytes == 8
    assert cache.discard_where(lambda k: k == "a") == 1 and cache.bytes == 4
    arrays: ByteLRU[np.ndarray] = ByteLRU(100, size_of=lambda a: a.nbytes)
    arrays.put(1, np.zeros(60, np.uint8))
    arrays.put(2, np.zeros(60, np.uint8))
    assert len(arrays) == 1 and arrays.bytes == 60


def test_handles_open_once_and_evict(boxes: Path, synthetic: Path, real: Path) -> None:
    cache = HandleCache(2)
    first = cache.get("boxes", boxes)
    assert cache.get("boxes", boxes) is first
    cache.get("synthetic", synthetic)
    cache.get("small", real / "small.svs")  # evicts boxes, the least recently used
    assert cache.get("boxes", boxes) is not first
    assert cache.opens == 4
    with pytest.raises(UnsupportedFile):
        cache.get("bad", real / "unopenable.tiff")


def test_concurrent_gets_open_a_slide_once(synthetic: Path) -> None:
    cache = HandleCache(4)
    barrier = threading.Barrier(8)
    seen = []

    def worker() -> None:
        barrier.wait()
        seen.append(cache.get("s", synthetic))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.opens == 1 and len({id(h) for h in seen}) == 1
