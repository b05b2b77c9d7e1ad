"""The tissue mask: Otsu on log optical density at a low-resolution level (the log
puts pale stroma with the dark nuclei, not with the glass), holes filled,
specks removed, optionally restricted to a user region; which tiles touch it; and a
sample of tissue pixels (for per-slide colour statistics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from functions.inference.tiling import SlideReader, TileGrid

#: Aim for about this many µm per mask pixel (8 µm: a 20,000-pixel slide at 0.5 µm/px
#: gives a 1,250-pixel mask).
MASK_MPP = 8.0
#: Tissue pieces smaller than this are specks (dust, debris), in µm².
MIN_TISSUE_UM2 = 5_000.0
#: Optical density (sum over R, G, B) below which a pixel is glass, whatever Otsu says.
MIN_OD = 0.08


@dataclass(frozen=True)
class TissueMask:
    """A boolean mask of the slide at `downsample` level-0 pixels per mask pixel."""

    mask: np.ndarray  # (rows, cols) bool
    downsample: float
    slide_mpp: float

    def area_mm2(self) -> float:
        side_mm = self.downsample * self.slide_mpp / 1000
        return float(self.mask.sum()) * side_mm * side_mm

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether level-0 points lie in tissue (outside the slide: no)."""
        col = np.floor(np.asarray(x, float) / self.downsample).astype(np.int64)
        row = np.floor(np.asarray(y, float) / self.downsample).astype(np.int64)
        rows, cols = self.mask.shape
        inside = (col >= 0) & (row >= 0) & (col < cols) & (row < rows)
        out = np.zeros(col.shape, bool)
        out[inside] = self.mask[row[inside], col[inside]]
        return out

    def touching(self, grid: TileGrid) -> list[tuple[int, int]]:
        """Tiles of `grid` (col, row), row by row, whose extent holds any tissue."""
        table = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        rows, cols = self.mask.shape
        found = []
        gc, gr = grid.shape
        for row in range(gr):
            for col in range(gc):
                x0, y0, x1, y1 = (v / self.downsample for v in grid.level0_box(col, row))
                c0, r0 = min(max(int(x0), 0), cols), min(max(int(y0), 0), rows)
                c1, r1 = min(max(int(np.ceil(x1)), 0), cols), min(max(int(np.ceil(y1)), 0), rows)
                if table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0] > 0:
                    found.append((col, row))
        return found


def mask_level(reader: SlideReader, slide_mpp: float) -> int:
    """The coarsest level at or finer than MASK_MPP µm per pixel (level 0 if none)."""
    wanted = MASK_MPP / slide_mpp
    level = 0
    for i, ds in enumerate(reader.downsamples):
        if ds <= wanted * 1.001:
            level = i
    return level


def tissue_mask(
    reader: SlideReader,
    slide_mpp: float,
    *,
    polygon: Sequence[tuple[float, float]] | None = None,
) -> TissueMask:
    """Tissue of the slide: Otsu threshold of optical density on a low level.

    Parameters
    ----------
    reader : SlideReader
        The open slide.
    slide_mpp : float
        Its µm per level-0 pixel.
    polygon : sequence of (x, y), optional
        A user region in level-0 pixels; tissue outside it is dropped.

    Returns
    -------
    TissueMask
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    level = mask_level(reader, slide_mpp)
    ds = reader.downsamples[level]
    width, height = (round(v / ds) for v in reader.dimensions)
    rgb = reader.read_level(level, 0, 0, width, height)
    log_od = np.log(-np.log((rgb.astype(np.float32) + 1) / 256).sum(axis=2) + 0.05)
    threshold = float(threshold_otsu(log_od)) if log_od.max() > log_od.min() else 0.0
    threshold = max(threshold, float(np.log(MIN_OD + 0.05)))
    mask = ndimage.binary_closing(log_od > threshold, iterations=2, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    mask = _drop_specks(mask, MIN_TISSUE_UM2 / (ds * slide_mpp) ** 2)
    if polygon is not None:
        mask &= rasterize(polygon, mask.shape, ds)
    return TissueMask(mask=mask, downsample=float(ds), slide_mpp=slide_mpp)


def _drop_specks(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]  # type: ignore[no-any-return]


def rasterize(
    polygon: Sequence[tuple[float, float]], shape: tuple[int, ...], downsample: float
) -> np.ndarray:
    """A level-0 polygon as a boolean mask of `shape` at `downsample`: a mask pixel is
    in when its centre is."""
    from skimage.draw import polygon as fill

    points = np.asarray(polygon, float) / downsample - 0.5
    out = np.zeros(shape[:2], bool)
    rr, cc = fill(points[:, 1], points[:, 0], shape[:2])
    out[rr, cc] = True
    return out


def sample_tissue_pixels(
    reader: SlideReader,
    grid: TileGrid,
    tissue: TissueMask,
    tiles: Sequence[tuple[int, int]],
    *,
    max_tiles: int = 16,
    max_pixels: int = 200_000,
    stride: int = 4,
) -> np.ndarray:
    """(N, 3) uint8 tissue pixels at the model's resolution from up to `max_tiles`
    tissue tiles spread over the slide (the same ones every run), every `stride`-th
    pixel in each direction."""
    picked = [
        tiles[i] for i in np.linspace(0, len(tiles) - 1, min(max_tiles, len(tiles))).astype(int)
    ]
    chunks = []
    for col, row in dict.fromkeys(picked):
        rgb = reader.read_tile(grid, col, row)[::stride, ::stride]
        x, y = grid.origin(col, row)
        yy, xx = np.mgrid[0 : grid.tile : stride, 0 : grid.tile : stride]
        inside = tissue.contains((x + xx + 0.5) * grid.scale, (y + yy + 0.5) * grid.scale)
        od = -np.log((rgb.astype(np.float32) + 1) / 256).sum(axis=2)
        chunks.append(rgb[inside & (od > MIN_OD)])
    pixels = np.concatenate(chunks) if chunks else np.empty((0, 3), np.uint8)
    if len(pixels) > max_pixels:
        pixels = pixels[np.linspace(0, len(pixels) - 1, max_pixels).astype(int)]
    return pixels
