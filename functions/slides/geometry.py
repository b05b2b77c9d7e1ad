"""Deep Zoom geometry, identical to OpenSlide's `DeepZoomGenerator`.

The arithmetic below follows `openslide.deepzoom.DeepZoomGenerator` step by step, with
the same float operations in the same order, so level sizes, tile counts, tile sizes and
the region each tile reads agree exactly (the tests compare every tile). It needs only
the slide's level sizes, downsamples and bounds, not an open slide, so the web layer can
answer geometry questions from a stored slide record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from common.errors import InvalidInput, NotFound

Size = tuple[int, int]


@dataclass(frozen=True)
class TileRead:
    """How to make one Deep Zoom tile: read `size` pixels of slide `level` at level-0
    `location`, then scale to `z_size` (the tile's final size)."""

    level: int
    location: Size
    size: Size
    z_size: Size

    @property
    def out_size(self) -> Size:
        """The tile's real size: `DeepZoomGenerator` scales with `Image.thumbnail`, which
        keeps the aspect ratio and never enlarges, so this can differ from `z_size`."""
        return thumbnail_size(self.size, self.z_size)

    @property
    def needs_resize(self) -> bool:
        return self.out_size != self.size


def thumbnail_size(size: Size, box: Size) -> Size:
    """The size `PIL.Image.thumbnail(box)` gives an image of `size` (Pillow 11-13)."""
    width, height = size
    x, y = math.floor(box[0]), math.floor(box[1])
    if x >= width and y >= height:
        return size
    aspect = width / height

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return (x, y)


def best_level_for_downsample(downsamples: Sequence[float], downsample: float) -> int:
    """The level `openslide_get_best_level_for_downsample` picks: the last level whose
    downsample does not exceed `downsample`."""
    if downsample < downsamples[0]:
        return 0
    for i in range(1, len(downsamples)):
        if downsample < downsamples[i]:
            return i - 1
    return len(downsamples) - 1


class DeepZoomGeometry:
    """Deep Zoom levels and tiles of a slide, as `DeepZoomGenerator` lays them out.

    Parameters
    ----------
    level_dimensions : sequence of (width, height)
        Slide level sizes, level 0 first.
    level_downsamples : sequence of float
        Slide level downsamples (OpenSlide's values).
    tile_size, overlap : int
        Deep Zoom tile size and overlap.
    limit_bounds : bool
        Render only the non-empty region given by `bounds`.
    bounds : (x, y, width, height), optional
        OpenSlide's `openslide.bounds-*` properties; missing parts mean "whole slide".
    """

    def __init__(
        self,
        level_dimensions: Sequence[Size],
        level_downsamples: Sequence[float],
        *,
        tile_size: int = 254,
        overlap: int = 1,
        limit_bounds: bool = False,
        bounds: tuple[int | None, int | None, int | None, int | None] | None = None,
    ) -> None:
        if not level_dimensions or len(level_dimensions) != len(level_downsamples):
            raise ValueError(
                f"need one downsample per level, got {len(level_dimensions)} "
                f"levels and {len(level_downsamples)} downsamples"
            )
        if tile_size < 1 or overlap < 0:
            raise ValueError(f"tile_size must be >= 1 and overlap >= 0, got {tile_size}, {overlap}")
        self.tile_size = tile_size
        self.overlap = overlap
        self.limit_bounds = limit_bounds
        self.slide_dimensions = tuple(tuple(d) for d in level_dimensions)
        self.slide_downsamples = tuple(level_downsamples)
        l0 = self.slide_dimensions[0]
        bx, by, bw, bh = bounds or (None, None, None, None)
        if limit_bounds:
            self.l0_offset: Size = (int(bx or 0), int(by or 0))
            scale = (
                int(bw if bw is not None else l0[0]) / l0[0],
                int(bh if bh is not None else l0[1]) / l0[1],
            )
            self.l_dimensions: tuple[Size, ...] = tuple(
                (math.ceil(w * scale[0]), math.ceil(h * scale[1])) for w, h in self.slide_dimensions
            )
        else:
            self.l0_offset = (0, 0)
            self.l_dimensions = self.slide_dimensions  # type: ignore[assignment]
        z_size = self.l_dimensions[0]
        z_dimensions = [z_size]
        while z_size[0] > 1 or z_size[1] > 1:
            z_size = (max(1, math.ceil(z_size[0] / 2)), max(1, math.ceil(z_size[1] / 2)))
            z_dimensions.append(z_size)
        self.level_dimensions: tuple[Size, ...] = tuple(reversed(z_dimensions))
        self.level_tiles: tuple[Size, ...] = tuple(
            (math.ceil(w / tile_size), math.ceil(h / tile_size)) for w, h in self.level_dimensions
        )
        self.level_count = len(self.level_dimensions)
        self.l0_z_downsamples: tuple[int, ...] = tuple(
            2 ** (self.level_count - z - 1) for z in range(self.level_count)
        )
        self.slide_levels: tuple[int, ...] = tuple(
            best_level_for_downsample(self.slide_downsamples, d) for d in self.l0_z_downsamples
        )
        self.l_z_downsamples: tuple[float, ...] = tuple(
            self.l0_z_downsamples[z] / self.slide_downsamples[self.slide_levels[z]]
            for z in range(self.level_count)
        )

    @classmethod
    def from_properties(
        cls,
        level_dimensions: Sequence[Size],
        level_downsamples: Sequence[float],
        properties: Mapping[str, str],
        **options: int | bool,
    ) -> DeepZoomGeometry:
        """Geometry with bounds taken from OpenSlide's `openslide.bounds-*` properties."""
        names = ("x", "y", "width", "height")
        raw = [properties.get(f"openslide.bounds-{n}") for n in names]
        bounds = tuple(int(v) if v is not None else None for v in raw)
        return cls(level_dimensions, level_downsamples, bounds=bounds, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"DeepZoomGeometry({self.l_dimensions[0][0]}x{self.l_dimensions[0][1]}, "
            f"tile_size={self.tile_size}, overlap={self.overlap}, "
            f"limit_bounds={self.limit_bounds})"
        )

    @property
    def tile_count(self) -> int:
        return sum(c * r for c, r in self.level_tiles)

    @property
    def dimensions(self) -> Size:
        """Size of the Deep Zoom image (the deepest level)."""
        return self.level_dimensions[-1]

    def check(self, level: int, col: int, row: int) -> None:
        """Raise NotFound unless (level, col, row) addresses an existing tile."""
        if not 0 <= level < self.level_count:
            raise NotFound(f"Deep Zoom level {level} is out of range 0..{self.level_count - 1}")
        cols, rows = self.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise NotFound(
                f"tile {col}_{row} is out of range at level {level} ({cols} x {rows} tiles)"
            )

    def tile(self, level: int, col: int, row: int) -> TileRead:
        """The slide read and the final size of one tile (`DeepZoomGenerator._get_tile_info`)."""
        self.check(level, col, row)
        slide_level = self.slide_levels[level]
        t_lim = self.level_tiles[level]
        address = (col, row)
        tl = tuple(self.overlap * int(t != 0) for t in address)
        br = tuple(self.overlap * int(t != lim - 1) for t, lim in zip(address, t_lim, strict=True))
        z_size = tuple(
            min(self.tile_size, z_lim - self.tile_size * t) + z_tl + z_br
            for t, z_lim, z_tl, z_br in zip(
                address, self.level_dimensions[level], tl, br, strict=True
            )
        )
        l_z = self.l_z_downsamples[level]
        l_location = [
            l_z * (self.tile_size * t - z_tl) for t, z_tl in zip(address, tl, strict=True)
        ]
        l0_location = tuple(
            int(self.slide_downsamples[slide_level] * loc + off)
            for loc, off in zip(l_location, self.l0_offset, strict=True)
        )
        l_size = tuple(
            int(min(math.ceil(l_z * dz), l_lim - math.ceil(loc)))
            for loc, dz, l_lim in zip(
                l_location, z_size, self.l_dimensions[slide_level], strict=True
            )
        )
        return TileRead(slide_level, l0_location, l_size, z_size)  # type: ignore[arg-type]


def parse_tile_format(fmt: str) -> str:
    """Normalise a tile format name; raise InvalidInput for anything but jpeg/png."""
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in ("jpeg", "png"):
        raise InvalidInput(f"tile format must be jpeg or png, not {fmt!r}")
    return fmt
