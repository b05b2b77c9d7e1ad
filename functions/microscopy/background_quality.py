"""How well a background surface fits: its residual over background pixels, per frame.

Each frame is cut into ``regions x regions`` regions; in each, the mean of
``I - B`` over the background pixels (outside the dilated cells) is divided by the
frame's background level. A correct surface leaves only noise (a fraction of a percent
in regions of thousands of pixels); one that misses a vignetting peak or a gradient
leaves regions well above or below zero. Per frame: the median over regions (a
surface too low or too high everywhere), their spread (1.4826 x MAD: structure the
surface does not follow) and the worst region; a frame whose worst region exceeds the
threshold is flagged, so a user sees a bad background before trusting the traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.arrays import Backend, get_backend
from functions.microscopy.background_fit import SurfaceFit, fold

#: a region is judged on at least this many background pixels and share of its pixels
_MIN_PIXELS = 256
_MIN_SHARE = 0.05


def region_residuals(
    frames: Any,
    surface: Any,
    keep: Any,
    *,
    step: int = 2,
    regions: int = 4,
    backend: Backend | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``frames - surface`` over background pixels in each region of each frame.

    Parameters
    ----------
    frames, surface : (T, Y, X) ndarray
    keep : (T, ceil(Y / step), ceil(X / step)) bool ndarray
        Background pixels of the grid sampled every `step` px.
    regions : int, optional
        Regions per axis.

    Returns
    -------
    residual : (T, r, r) float64 ndarray
        NaN where a region has too few background pixels to judge (fewer than 256 or
        5 % of its pixels: the noise of a mean over fewer would pass for a residual).
    count : (T, r, r) float64 ndarray
        Background pixels (of the sampled grid) per region.
    """
    be = backend or get_backend("cpu")
    xp = be.xp
    raw = frames[:, ::step, ::step]
    if raw.shape != keep.shape or frames.shape != surface.shape:
        raise ValueError(
            f"frames {frames.shape}, surface {surface.shape} and keep {keep.shape} "
            f"(sampled every {step} px) do not match"
        )
    diff = xp.subtract(raw, surface[:, ::step, ::step], dtype=xp.float32)
    diff *= keep
    _, h, w = keep.shape
    ry, rx = max(h // regions, 1), max(w // regions, 1)
    # along rows first (contiguous, no cast: float32 sums of one region row's pixels),
    # then the few per-row sums in float64; counts over the mask's bytes in 16 bits
    sums = be.to_numpy(fold(fold(diff, 2, rx, xp.float32), 1, ry, xp.float64))
    ones = keep.view(xp.uint8) if keep.dtype == bool else keep
    count = be.to_numpy(fold(fold(ones, 1, ry, xp.uint32), 2, rx, xp.float64))
    # too few background pixels to judge a region: its noise alone would flag it
    enough = count >= max(_MIN_PIXELS, _MIN_SHARE * ry * rx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(enough, sums / count, np.nan), count


def block_residuals(
    fit: SurfaceFit, sampled: tuple[int, int], *, regions: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`region_residuals` of a fitted surface from the block sums it was fitted
    to, without another pass over the frames.

    A block's residual sum is its kept pixels' sum less their count times the surface
    at their centroid: exact for a surface linear across the block, and off by the
    surface's curvature times the pixels' spread (under 0.1 % of the level for a
    vignetting bump and 32-px blocks) otherwise. Regions are made of whole blocks (a
    block belongs to the region its first row and column fall in): the same pixels as
    :func:`region_residuals` where blocks tile the regions, as at 256² to 2048².

    Parameters
    ----------
    fit : SurfaceFit
    sampled : (int, int)
        Shape of the sampled grid the block statistics were made on.
    regions : int, optional
        Regions per axis.

    Returns
    -------
    residual, count : (T, r, r) float64 ndarray
        As :func:`region_residuals`.
    """
    stats = fit.stats
    diff = stats.total - stats.pixels * fit.at_centroids
    h, w = sampled
    ry, rx = max(h // regions, 1), max(w // regions, 1)
    to_y = _block_regions(stats.total.shape[1], fit.block, h, ry)
    to_x = _block_regions(stats.total.shape[2], fit.block, w, rx)
    sums = np.einsum("ri,tij,sj->trs", to_y, diff, to_x)
    count = np.einsum("ri,tij,sj->trs", to_y, stats.pixels, to_x)
    enough = count >= max(_MIN_PIXELS, _MIN_SHARE * ry * rx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(enough, sums / count, np.nan), count


def _block_regions(blocks: int, block: int, n: int, size: int) -> np.ndarray:
    """(regions, blocks) 0/1 matrix: which of the regions of `size` (the remainder
    joining the last, as :func:`fold`) each block of side `block` starts in."""
    regions = max(n // size, 1) if n > size else 1
    owner = np.minimum(np.arange(blocks) * block // size, regions - 1)
    out = np.zeros((regions, blocks))
    out[owner, np.arange(blocks)] = 1.0
    return out


@dataclass
class QualityLog:
    """Per-frame background quality of one channel, accumulated batch by batch."""

    threshold: float
    level: list[float] = field(default_factory=list)
    median: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)
    worst: list[float] = field(default_factory=list)

    def add(self, residual: np.ndarray, level: np.ndarray) -> None:
        """Record frames from their region residuals (counts) and background levels."""
        for res, lev in zip(residual, np.asarray(level, dtype=np.float64), strict=True):
            rel = res[np.isfinite(res)] / lev if lev > 0 else np.zeros(0)
            self.level.append(float(lev))
            if not rel.size:  # no background pixel: nothing to judge
                self.median.append(float("nan"))
                self.spread.append(float("nan"))
                self.worst.append(float("nan"))
                continue
            mid = float(np.median(rel))
            self.median.append(mid)
            self.spread.append(float(1.4826 * np.median(np.abs(rel - mid))))
            self.worst.append(float(np.abs(rel).max()))

    def flagged(self) -> list[int]:
        """Frames whose worst region's residual exceeds the threshold."""
        return [i for i, w in enumerate(self.worst) if w > self.threshold]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per-frame lists (fractions of the level; level in counts), the
        flagged frames and the worst frame."""

        def rounded(values: list[float]) -> list[float | None]:
            return [None if not np.isfinite(v) else round(v, 5) for v in values]

        finite = [w for w in self.worst if np.isfinite(w)]
        return {
            "level": [round(v, 2) for v in self.level],
            "residual_median": rounded(self.median),
            "residual_spread": rounded(self.spread),
            "residual_worst": rounded(self.worst),
            "worst": round(max(finite), 5) if finite else None,
            "flagged_frames": self.flagged(),
        }
