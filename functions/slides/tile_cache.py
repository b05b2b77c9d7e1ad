"""A thread-safe least-recently-used cache bounded by the bytes it holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Keep values up to `max_bytes` in total, evicting the least recently used first.

    `size_of` measures a value (default `len`, which fits `bytes`; pass
    ``lambda a: a.nbytes`` for arrays). A value larger than the whole budget is not
    kept. One lock guards the bookkeeping only; values are computed outside it.
    """

    def __init__(self, max_bytes: int, *, size_of: Callable[[V], int] = len) -> None:  # type: ignore[assignment]
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return (
            f"ByteLRU({len(self._items)} items, {self.bytes}/{self.max_bytes} bytes, "
            f"{self.hits} hits, {self.misses} misses)"
        )

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self.bytes -= evicted

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key matches; returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._items if predicate(k)]
            for key in doomed:
                self.bytes -= self._items.pop(key)[1]
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
