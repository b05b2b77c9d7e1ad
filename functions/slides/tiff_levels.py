"""Direct access to the stored tiles of TIFF-based slides (Aperio SVS, generic tiled TIFF).

OpenSlide composites every read through cairo and a global tile cache; for TIFF slides
we can do better: read a tile's bytes with `os.pread` (thread-safe, no lock, no shared
file position), decode it with libjpeg-turbo / zlib through imagecodecs, and keep the
decoded tile in a byte-bounded cache shared by all slides. Stored JPEG tiles can also be
handed out as they are (tables merged in), which the renderer uses for pass-through.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import UnsupportedFile
from functions.slides.tile_cache import ByteLRU

#: OpenSlide vendors whose levels are plain tiled TIFF pages.
TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})
JPEG = 7
#: Compressions tifffile/imagecodecs decode here: none, LZW, JPEG, Adobe deflate, deflate.
DECODABLE = frozenset({1, 5, JPEG, 8, 32946})
RGB, YCBCR = 2, 6
#: Adobe APP14 segment with transform 0: tells decoders the JPEG holds RGB, not YCbCr.
ADOBE_RGB = bytes.fromhex("ffee000e41646f626500640000000000")


@dataclass(frozen=True)
class TiffLevel:
    """One pyramid level stored as a tiled, chunky, 8-bit RGB TIFF page."""

    page: int
    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    compression: int
    photometric: int
    jpegtables: bytes | None
    decode: Any  # tifffile's decode function for this page (pure, thread-safe)

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)


def _level_from_page(index: int, page: Any) -> TiffLevel | None:
    ok = (
        page.is_tiled
        and page.compression in DECODABLE
        and page.bitspersample == 8
        and page.samplesperpixel == 3
        and page.planarconfig == 1
        and page.photometric in (RGB, YCBCR)
        and (page.photometric == RGB or page.compression == JPEG)
        and getattr(page, "imagedepth", 1) == 1
    )
    if not ok:
        return None
    tables = page.jpegtables
    return TiffLevel(
        page=index,
        width=page.imagewidth,
        height=page.imagelength,
        tile_width=page.tilewidth,
        tile_height=page.tilelength,
        offsets=tuple(int(o) for o in page.dataoffsets),
        counts=tuple(int(c) for c in page.databytecounts),
        compression=int(page.compression),
        photometric=int(page.photometric),
        jpegtables=bytes(tables) if tables else None,
        decode=page.decode,
    )


class TiffPyramid:
    """Stored tiles of every level of a TIFF slide, read without OpenSlide.

    Use `TiffPyramid.open`, which returns None when the slide does not qualify (another
    vendor, a level that is not a plain RGB tiled page, an unsupported compression);
    the caller then reads through OpenSlide.
    """

    def __init__(
        self,
        path: str,
        levels: Sequence[TiffLevel],
        cache: ByteLRU[np.ndarray],
        key: str,
        background: tuple[int, int, int],
    ) -> None:
        self.path = path
        self.levels = tuple(levels)
        self._cache = cache
        self._key = key
        self._background = np.asarray(background, np.uint8)
        self._fd = os.open(path, os.O_RDONLY)
        self._closed = threading.Event()
        self.tile_reads = [0] * len(self.levels)  # decoded tiles per level, for tests

    @classmethod
    def open(
        cls,
        path: str,
        vendor: str | None,
        level_dimensions: Sequence[tuple[int, int]],
        cache: ByteLRU[np.ndarray],
        key: str,
        background: tuple[int, int, int] = (255, 255, 255),
    ) -> TiffPyramid | None:
        if vendor not in TIFF_VENDORS:
            return None
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                pages: list[Any] = list(tif.pages)
                tiled = [(i, p) for i, p in enumerate(pages) if p.is_tiled]
                by_size = {(p.imagewidth, p.imagelength): (i, p) for i, p in reversed(tiled)}
                levels = []
                for dims in level_dimensions:
                    found = by_size.get((int(dims[0]), int(dims[1])))
                    level = _level_from_page(*found) if found else None
                    if level is None:
                        return None
                    levels.append(level)
        except (tifffile.TiffFileError, OSError, ValueError):
            return None
        return cls(path, levels, cache, key, background)

    def __repr__(self) -> str:
        return f"TiffPyramid({self.path!r}, {len(self.levels)} levels)"

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            os.close(self._fd)

    def raw_tile(self, level: int, index: int) -> bytes:
        lv = self.levels[level]
        return os.pread(self._fd, lv.counts[index], lv.offsets[index])

    def jpeg_tile(self, level: int, col: int, row: int) -> bytes | None:
        """The stored tile as a complete JPEG file, or None if it is not stored as JPEG."""
        lv = self.levels[level]
        if lv.compression != JPEG:
            return None
        raw = self.raw_tile(level, row * lv.tiles_across + col)
        if not raw.startswith(b"\xff\xd8"):
            return None
        if lv.jpegtables:
            # Abbreviated stream: splice the shared tables in after SOI, drop their EOI.
            raw = lv.jpegtables[:-2] + raw[2:]
        if lv.photometric == RGB:
            raw = raw[:2] + ADOBE_RGB + raw[2:]
        return raw

    def decoded_tile(self, level: int, index: int) -> np.ndarray:
        key = (self._key, level, index)
        tile = self._cache.get(key)
        if tile is None:
            tile = self._decode(level, index)
            self._cache.put(key, tile)
        return tile

    def _decode(self, level: int, index: int) -> np.ndarray:
        lv = self.levels[level]
        self.tile_reads[level] += 1
        if lv.counts[index] == 0:  # a missing tile reads as background, like OpenSlide
            return np.broadcast_to(self._background, (lv.tile_height, lv.tile_width, 3))
        raw = self.raw_tile(level, index)
        try:
            if lv.compression == JPEG:
                import imagecodecs

                colorspace = "RGB" if lv.photometric == RGB else None
                tile = imagecodecs.jpeg8_decode(
                    raw, tables=lv.jpegtables, colorspace=colorspace, outcolorspace="RGB"
                )
            else:
                tile = lv.decode(raw, index, jpegtables=lv.jpegtables)[0][0]
        except Exception as exc:  # codec errors have no common base class
            raise UnsupportedFile(
                f"{os.path.basename(self.path)}: stored tile {index} of "
                f"level {level} cannot be decoded: {exc}"
            ) from None
        if tile.shape != (lv.tile_height, lv.tile_width, 3):
            raise UnsupportedFile(
                f"{os.path.basename(self.path)}: stored tile {index} of "
                f"level {level} decodes to {tile.shape}"
            )
        return tile

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Pixels [y, y+height) x [x, x+width) of `level` as a (height, width, 3) uint8 array;
        anything outside the level is background."""
        lv = self.levels[level]
        out = np.empty((height, width, 3), np.uint8)
        x1, y1 = min(x + width, lv.width), min(y + height, lv.height)
        if x < 0 or y < 0 or x1 < x + width or y1 < y + height:
            out[:] = self._background
        tw, th = lv.tile_width, lv.tile_height
        for ty in range(max(y, 0) // th, (y1 - 1) // th + 1 if y1 > 0 else 0):
            for tx in range(max(x, 0) // tw, (x1 - 1) // tw + 1 if x1 > 0 else 0):
                tile = self.decoded_tile(level, ty * lv.tiles_across + tx)
                sx0, sy0 = max(x, tx * tw), max(y, ty * th)
                sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw, :3
                ]
        return out
