"""Open slides once: a thread-safe LRU of slide handles keyed by slide.

A handle wraps one `openslide.OpenSlide` (which OpenSlide documents as safe to use from
many threads at once) plus, for TIFF-based slides, a `TiffPyramid` that reads stored
tiles with `pread`. Neither needs a lock per read, so reads of one slide, and of
different slides, run in parallel. The cache's lock guards bookkeeping only; opening a
slide happens outside it under a per-slide lock, so a slow open never blocks others.
Evicted handles are not closed while a reader may still hold them; they close when the
last reference goes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UnsupportedFile
from functions.slides.geometry import DeepZoomGeometry, TileRead
from functions.slides.tiff_levels import TiffPyramid
from functions.slides.tile_cache import ByteLRU

#: Sub-pixel offsets below this are treated as whole pixels (pixman works in 1/65536).
FRACTION_EPS = 1e-6


def open_openslide(path: str | Path) -> Any:
    """`openslide.OpenSlide(path)`, with OpenSlide's errors turned into UnsupportedFile."""
    import openslide

    name = Path(path).name
    if not Path(path).is_file():
        raise UnsupportedFile(f"{name} does not exist")
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise UnsupportedFile(f"{name} is not a whole-slide image OpenSlide can read") from None
    except openslide.OpenSlideError as exc:
        raise UnsupportedFile(f"{name} cannot be opened as a slide: {exc}") from None


def parse_background(properties: dict[str, str]) -> tuple[int, int, int]:
    value = properties.get("openslide.background-color", "ffffff")
    try:
        return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    except ValueError:
        return (255, 255, 255)


class SlideHandle:
    """An open slide: its levels, properties, and region reads at any level."""

    def __init__(
        self,
        path: str | Path,
        *,
        key: str | None = None,
        decoded_cache: ByteLRU[np.ndarray] | None = None,
    ) -> None:
        self.path = str(path)
        self.key = key or self.path
        self.osr = open_openslide(path)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(self.osr.level_dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(self.osr.level_downsamples)
        self.properties: dict[str, str] = dict(self.osr.properties)
        self.vendor = self.properties.get("openslide.vendor")
        self.background = parse_background(self.properties)
        cache = (
            decoded_cache
            if decoded_cache is not None
            else ByteLRU(64 << 20, size_of=lambda a: a.nbytes)
        )
        self.tiff = TiffPyramid.open(
            self.path, self.vendor, self.level_dimensions, cache, self.key, self.background
        )
        self.openslide_reads = [0] * len(self.level_dimensions)
        self._geometries: dict[tuple[int, int, bool], DeepZoomGeometry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        via = "tiff" if self.tiff else "openslide"
        levels = len(self.level_dimensions)
        return f"SlideHandle({self.path!r}, {self.vendor}, {levels} levels, {via})"

    def geometry(self, tile_size: int, overlap: int, limit_bounds: bool) -> DeepZoomGeometry:
        key = (tile_size, overlap, limit_bounds)
        geometry = self._geometries.get(key)
        if geometry is None:
            geometry = DeepZoomGeometry.from_properties(
                self.level_dimensions,
                self.level_downsamples,
                self.properties,
                tile_size=tile_size,
                overlap=overlap,
                limit_bounds=limit_bounds,
            )
            with self._lock:
                self._geometries[key] = geometry
        return geometry

    def read(self, read: TileRead) -> np.ndarray:
        """The (height, width, 3) pixels a Deep Zoom tile is made from, at its slide level."""
        if self.tiff is not None:
            return self._read_tiff(read)
        return self.read_openslide(read.location, read.level, read.size)

    def _read_tiff(self, read: TileRead) -> np.ndarray:
        # OpenSlide paints a level at level-0 location / downsample, a fraction when the
        # downsample is not a whole number, and cairo then samples bilinearly. Do the same
        # so tiles match DeepZoomGenerator's on every slide, not only on tidy ones.
        ds = self.level_downsamples[read.level]
        px, py = read.location[0] / ds, read.location[1] / ds
        x, y = math.floor(px), math.floor(py)
        fx, fy = px - x, py - y
        width, height = read.size
        if fx < FRACTION_EPS and fy < FRACTION_EPS:
            return self.tiff.read_region(read.level, x, y, width, height)  # type: ignore[union-attr]
        src = self.tiff.read_region(read.level, x, y, width + 1, height + 1)  # type: ignore[union-attr]
        acc = src.astype(np.float32)
        acc = acc[:, :-1] * (1 - fx) + acc[:, 1:] * fx
        acc = acc[:-1] * (1 - fy) + acc[1:] * fy
        return (acc + 0.5).astype(np.uint8)

    def read_openslide(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """`read_region` composited on the slide's background colour, as RGB."""
        import openslide

        self.openslide_reads[level] += 1
        try:
            rgba = np.asarray(self.osr.read_region(location, level, size))
        except openslide.OpenSlideError as exc:
            raise UnsupportedFile(
                f"{Path(self.path).name}: pixel data cannot be read: {exc}"
            ) from None
        alpha = rgba[..., 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        a = alpha.astype(np.uint16)
        bg = np.asarray(self.background, np.uint16)
        out = (rgba[..., :3] * a + bg * (255 - a) + 127) // 255
        return out.astype(np.uint8)

    def close(self) -> None:
        if self.tiff is not None:
            self.tiff.close()
        self.osr.close()


class HandleCache:
    """Up to `max_handles` open slides, least recently used evicted first."""

    def __init__(
        self, max_handles: int = 32, *, decoded_cache: ByteLRU[np.ndarray] | None = None
    ) -> None:
        if max_handles < 1:
            raise ValueError(f"max_handles must be >= 1, got {max_handles}")
        self.max_handles = max_handles
        self.decoded_cache = (
            decoded_cache
            if decoded_cache is not None
            else ByteLRU(64 << 20, size_of=lambda a: a.nbytes)
        )
        self._handles: OrderedDict[str, SlideHandle] = OrderedDict()
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.opens = 0

    def __repr__(self) -> str:
        return f"HandleCache({len(self._handles)}/{self.max_handles} open)"

    def get(self, key: str, path: str | Path) -> SlideHandle:
        """The open handle for `key`, opening `path` if it is not open yet."""
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None:
                self._handles.move_to_end(key)
                return handle
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            with self._lock:
                handle = self._handles.get(key)
            if handle is None:
                handle = SlideHandle(path, key=key, decoded_cache=self.decoded_cache)
                with self._lock:
                    self.opens += 1
                    self._handles[key] = handle
                    while len(self._handles) > self.max_handles:
                        self._handles.popitem(last=False)
        with self._lock:
            self._opening.pop(key, None)
        return handle

    def close(self) -> None:
        """Close every open slide and drop the decoded tiles (at shutdown, when no
        request holds a handle any more)."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), OrderedDict()
        for handle in handles:
            handle.close()
        self.decoded_cache.clear()

    def evict(self, key: str) -> None:
        """Forget a slide (deleted or replaced); its cached decoded tiles go too."""
        with self._lock:
            self._handles.pop(key, None)
        self.decoded_cache.discard_where(lambda k: isinstance(k, tuple) and k[0] == key)
