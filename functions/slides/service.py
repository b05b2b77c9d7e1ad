"""The tile service the web layer calls: settings, open handles, cached tiles, ETags.

Settings are `common.settings.TileSettings` (`APERTURE_TILES_*`), given or read from the
environment, so the tile code runs without the web service.

One `SlideTiles` per process. Every method is synchronous and thread-safe; `async`
callers use the `a*` variants, which run the work in a worker thread so the event loop
never renders. The web layer resolves a slide id to a local file path (downloading from
object storage if need be) and passes both in.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from common.errors import InvalidInput, NotFound
from common.settings import Settings, TileSettings
from functions.slides.dzi import DziDescriptor
from functions.slides.geometry import DeepZoomGeometry, parse_tile_format
from functions.slides.handles import HandleCache, SlideHandle
from functions.slides.render import MEDIA_TYPES, encode, render_tile, resize
from functions.slides.tile_cache import ByteLRU
from functions.slides.tile_files import TileFiles

T = TypeVar("T")

#: Tiles of a slide never change under a given URL (settings are part of the ETag).
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Bump when rendering changes in a way that changes bytes.
RENDERER_VERSION = "1"


@dataclass(frozen=True)
class Tile:
    """An encoded image ready to send."""

    content: bytes
    media_type: str
    etag: str
    cache_control: str = CACHE_CONTROL


class SlideTiles:
    """Deep Zoom descriptors, tiles, thumbnails and associated images of slides."""

    def __init__(
        self, settings: TileSettings | None = None, files: TileFiles | None = None
    ) -> None:
        self.settings = settings or Settings().tiles  # APERTURE_TILES_* when not given
        self.files = files  # rendered tiles shared with other processes, if any
        s = self.settings
        self.handles = HandleCache(
            s.max_handles, decoded_cache=ByteLRU(s.decoded_cache_bytes, size_of=lambda a: a.nbytes)
        )
        self.cache: ByteLRU[Tile] = ByteLRU(s.cache_bytes, size_of=lambda t: len(t.content))
        self._threads = render_threads()
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SlideTiles({self.handles!r}, {self.cache!r})"

    def handle(self, slide_id: str, path: str | Path) -> SlideHandle:
        return self.handles.get(str(slide_id), path)

    def geometry(self, slide_id: str, path: str | Path) -> DeepZoomGeometry:
        s = self.settings
        return self.handle(slide_id, path).geometry(s.tile_size, s.overlap, s.limit_bounds)

    def descriptor(self, slide_id: str, path: str | Path) -> DziDescriptor:
        """The DZI descriptor (`.to_xml()` / `.to_json(tiles_url)`)."""
        return DziDescriptor.from_geometry(self.geometry(slide_id, path), self.settings.format)

    def _etag(self, handle: SlideHandle, *parts: object) -> str:
        s = self.settings
        identity = handle.properties.get("openslide.quickhash-1") or handle.path
        text = "|".join(
            map(
                str,
                (
                    RENDERER_VERSION,
                    identity,
                    s.tile_size,
                    s.overlap,
                    s.limit_bounds,
                    s.quality,
                    *parts,
                ),
            )
        )
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'

    def tile(
        self, slide_id: str, path: str | Path, level: int, col: int, row: int, fmt: str
    ) -> Tile:
        """One Deep Zoom tile. Raises NotFound (level/tile out of range) or InvalidInput
        (format not jpeg/png)."""
        fmt = parse_tile_format(fmt)
        key = (str(slide_id), level, col, row, fmt)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        stored = self.files.get(*key) if self.files is not None else None
        if stored is not None:
            tile = Tile(stored[0], MEDIA_TYPES[fmt], stored[1])
            self.cache.put(key, tile)
            return tile
        handle = self.handle(slide_id, path)
        geometry = self.geometry(slide_id, path)
        content = render_tile(
            handle, geometry, level, col, row, fmt=fmt, quality=self.settings.quality
        )
        tile = Tile(content, MEDIA_TYPES[fmt], self._etag(handle, level, col, row, fmt))
        self.cache.put(key, tile)
        if self.files is not None:
            self.files.put(*key, tile.content, tile.etag)
        return tile

    def cached_tile(self, slide_id: str, level: int, col: int, row: int, fmt: str) -> Tile | None:
        """The tile if it is in the rendered-tile cache (no slide needed, no thread)."""
        return self.cache.get((str(slide_id), level, col, row, parse_tile_format(fmt)))

    def thumbnail(self, slide_id: str, path: str | Path, max_size: int = 512) -> Tile:
        """A JPEG of the whole slide fitting in max_size x max_size, read from the best
        level (never level 0 of a pyramid)."""
        if not 1 <= max_size <= 4096:
            raise InvalidInput(f"thumbnail max must be within 1..4096, got {max_size}")
        key = (str(slide_id), "thumbnail", max_size)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        handle = self.handle(slide_id, path)
        pixels = _thumbnail_pixels(handle, max_size)
        tile = Tile(
            encode(pixels, "jpeg", 85), "image/jpeg", self._etag(handle, "thumbnail", max_size)
        )
        self.cache.put(key, tile)
        return tile

    def associated_image(self, slide_id: str, path: str | Path, name: str) -> Tile:
        """An associated image (label, macro, thumbnail, ...) as PNG; NotFound if absent."""
        import openslide

        handle = self.handle(slide_id, path)
        if name not in handle.osr.associated_images:
            raise NotFound(f"the slide has no associated image {name!r}")
        try:
            image = handle.osr.associated_images[name].convert("RGB")
        except openslide.OpenSlideError as exc:
            raise InvalidInput(f"the {name} image cannot be read: {exc}") from None
        content = encode(np.asarray(image), "png")
        return Tile(content, "image/png", self._etag(handle, "associated", name))

    def close(self) -> None:
        """Close every open slide and drop the cached tiles (at shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.handles.close()
        self.cache.clear()

    def evict(self, slide_id: str) -> None:
        """Forget a deleted or replaced slide."""
        self.handles.evict(str(slide_id))
        if self.files is not None:
            self.files.evict(str(slide_id))
        self.cache.discard_where(lambda k: isinstance(k, tuple) and k[0] == str(slide_id))

    async def _off_loop(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on the render threads, never on the event loop."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tiles")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(work, *args))

    async def atile(
        self, slide_id: str, path: str | Path, level: int, col: int, row: int, fmt: str
    ) -> Tile:
        return await self._off_loop(self.tile, slide_id, path, level, col, row, fmt)

    async def athumbnail(self, slide_id: str, path: str | Path, max_size: int = 512) -> Tile:
        return await self._off_loop(self.thumbnail, slide_id, path, max_size)

    async def aassociated_image(self, slide_id: str, path: str | Path, name: str) -> Tile:
        return await self._off_loop(self.associated_image, slide_id, path, name)

    async def adescriptor(self, slide_id: str, path: str | Path) -> DziDescriptor:
        return await self._off_loop(self.descriptor, slide_id, path)


def settings_tag(settings: TileSettings) -> str:
    """Names what a tile's bytes depend on besides the slide and its address: the
    renderer version and the tile settings (tiles made with others are other tiles)."""
    s = settings
    text = f"{RENDERER_VERSION}|{s.tile_size}|{s.overlap}|{s.limit_bounds}|{s.quality}"
    return f"r{RENDERER_VERSION}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def render_threads() -> int:
    """Threads that render tiles: as many as cores, at least four. Decoding, resizing and
    encoding release the GIL, so they run in parallel; a pool of its own keeps a burst of
    tiles from queueing the app's other blocking work (its record lookups) behind it."""
    return max(4, os.cpu_count() or 1)


def _thumbnail_pixels(handle: SlideHandle, max_size: int) -> np.ndarray:
    width, height = handle.level_dimensions[0]
    scale = max(width, height) / max_size
    out = (
        (max(1, round(width / scale)), max(1, round(height / scale)))
        if scale > 1
        else (width, height)
    )
    downsample = max(width / out[0], height / out[1])
    from functions.slides.geometry import best_level_for_downsample

    level = best_level_for_downsample(handle.level_downsamples, downsample)
    lw, lh = handle.level_dimensions[level]
    if handle.tiff is not None:
        pixels = handle.tiff.read_region(level, 0, 0, lw, lh)
    else:
        pixels = handle.read_openslide((0, 0), level, (lw, lh))
    return resize(pixels, out) if (lw, lh) != out else pixels
