"""Where the synthetic H&E slide's tissue and nuclei are: a low-resolution tissue mask
and a list of nucleus outlines, all drawn from one seed before any pixel is rendered.

Nuclei are irregular ellipses of varied size, elongation and stain; about a quarter sit
in touching clusters of two to four; the rest keep a small gap. Their places ignore any
tile grid, so many cross tile boundaries of whatever grid a model uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The tissue mask holds one pixel per MASK_DOWNSAMPLE x MASK_DOWNSAMPLE slide pixels.
MASK_DOWNSAMPLE = 8
#: Side of the square cells of the candidate grid (one candidate nucleus per cell).
CELL = 26
RADIUS_RANGE = (6.5, 11.0)  # equivalent radius in pixels at 0.5 um/px (3-5.5 um)
VERTICES = 32
CLUSTER_FRACTION = 0.25


@dataclass(frozen=True)
class Layout:
    """A slide's plan: its tissue mask and its nuclei (outlines in level-0 pixels)."""

    width: int
    height: int
    tissue: np.ndarray  # (ceil(H / 8), ceil(W / 8)) bool
    outlines: list[np.ndarray]  # each (VERTICES, 2) float64 x, y
    stain: np.ndarray  # (n,) hematoxylin optical density of each nucleus

    def in_tissue(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether level-0 points (x, y) lie in tissue."""
        col = np.clip(np.asarray(x) // MASK_DOWNSAMPLE, 0, self.tissue.shape[1] - 1)
        row = np.clip(np.asarray(y) // MASK_DOWNSAMPLE, 0, self.tissue.shape[0] - 1)
        return self.tissue[row.astype(int), col.astype(int)]  # type: ignore[no-any-return]


def plan_layout(width: int, height: int, seed: int) -> Layout:
    """Tissue islands and nuclei of a `width` x `height` slide, fixed by `seed`."""
    if width < 64 or height < 64:
        raise ValueError(
            f"a synthetic H&E slide needs at least 64 x 64 pixels, got {width}x{height}"
        )
    rng = np.random.default_rng(seed)
    tissue = _tissue_mask(width, height, rng)
    layout = Layout(width, height, tissue, [], np.empty(0))
    outlines, stain = _place_nuclei(layout, rng)
    return Layout(width, height, tissue, outlines, stain)


def _tissue_mask(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Blobby islands on a white background, none touching the slide's edge."""
    from scipy import ndimage

    mh, mw = -(-height // MASK_DOWNSAMPLE), -(-width // MASK_DOWNSAMPLE)
    coarse = rng.standard_normal((max(4, mh // 16), max(4, mw // 16)))
    coarse = ndimage.gaussian_filter(coarse, 1.5, mode="wrap")
    field = ndimage.zoom(coarse, (mh / coarse.shape[0], mw / coarse.shape[1]), order=1)
    field = field[:mh, :mw]
    field = np.pad(field, ((0, mh - field.shape[0]), (0, mw - field.shape[1])), mode="edge")
    yy, xx = np.mgrid[0:mh, 0:mw]
    edge = np.minimum.reduce([yy, xx, mh - 1 - yy, mw - 1 - xx]) * MASK_DOWNSAMPLE
    ramp = np.clip(edge / max(64.0, 0.04 * min(width, height)), 0, 1)  # white margin
    field = (field - field.mean()) / (field.std() + 1e-9) + 0.9 * (ramp - 1) * 4
    mask = field > np.quantile(field, 0.45)
    mask = ndimage.binary_opening(mask, iterations=2)
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= 256
    keep[0] = False
    return keep[labels]  # type: ignore[no-any-return]


def _outline(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    """An irregular ellipse of equivalent radius about `radius` centred near (cx, cy)."""
    elongation = rng.uniform(1.0, 1.7)
    a, b = radius * np.sqrt(elongation), radius / np.sqrt(elongation)
    angle = rng.uniform(0, np.pi)
    phi = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    wobble = 1 + sum(
        rng.uniform(0, 0.05) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    x, y = a * np.cos(phi) * wobble, b * np.sin(phi) * wobble
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _candidates(layout: Layout, rng: np.random.Generator) -> list[tuple[float, float, float, int]]:
    """(x, y, radius, cluster) candidates: a jittered grid, some grown into clusters."""
    gx, gy = np.meshgrid(
        np.arange(0, layout.width - CELL, CELL), np.arange(0, layout.height - CELL, CELL)
    )
    x = gx.ravel() + rng.uniform(0, CELL, gx.size)
    y = gy.ravel() + rng.uniform(0, CELL, gy.size)
    radius = rng.uniform(*RADIUS_RANGE, x.size)
    margin = radius + 3
    inside = np.ones(x.size, bool)
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        inside &= layout.in_tissue(x + dx * margin, y + dy * margin)
    order = rng.permutation(np.flatnonzero(inside))
    out: list[tuple[float, float, float, int]] = []
    for i in order:
        cluster = int(i) if rng.random() < CLUSTER_FRACTION / 2 else -1
        out.append((float(x[i]), float(y[i]), float(radius[i]), cluster))
        if cluster < 0:
            continue
        px, py, pr = x[i], y[i], radius[i]
        for _ in range(rng.integers(1, 4)):  # 1-3 companions, each touching the last
            r = rng.uniform(*RADIUS_RANGE)
            theta = rng.uniform(0, 2 * np.pi)
            d = 0.97 * (pr + r)
            px, py, pr = px + d * np.cos(theta), py + d * np.sin(theta), r
            out.append((float(px), float(py), float(r), cluster))
    return out


def _place_nuclei(layout: Layout, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Accept candidates greedily: apart by a gap unless in the same cluster, where they
    may touch; all wholly in tissue."""
    grid: dict[tuple[int, int], list[int]] = {}
    outlines: list[np.ndarray] = []
    extent: list[tuple[float, float, float, int, float]] = []
    reach = 2 * RADIUS_RANGE[1] * 1.4 + 4
    for x, y, r, cluster in _candidates(layout, rng):
        outline = _outline(rng, x, y, r)
        ox, oy = outline[:, 0], outline[:, 1]
        if ox.min() < 2 or oy.min() < 2 or ox.max() > layout.width - 3:
            continue
        if oy.max() > layout.height - 3 or not layout.in_tissue(ox, oy).all():
            continue
        far = float(np.hypot(ox - x, oy - y).max())
        key = (int(x // reach), int(y // reach))
        if _conflicts(grid, extent, key, (x, y, far, cluster, r)):
            continue
        grid.setdefault(key, []).append(len(extent))
        extent.append((x, y, far, cluster, r))
        outlines.append(outline)
    stain = rng.uniform(0.75, 1.35, len(outlines))
    return outlines, stain


def _conflicts(
    grid: dict[tuple[int, int], list[int]],
    extent: list[tuple[float, float, float, int, float]],
    key: tuple[int, int],
    new: tuple[float, float, float, int, float],
) -> bool:
    """Whether a nucleus (x, y, farthest outline point, cluster, radius) hits an
    accepted one: cluster mates may touch (centres 0.85 of their radii apart), others
    keep 2 px between their extremes."""
    x, y, far, cluster, r = new
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for j in grid.get((key[0] + dx, key[1] + dy), ()):
                ox, oy, ofar, ocluster, orad = extent[j]
                d = np.hypot(ox - x, oy - y)
                touching = cluster >= 0 and ocluster == cluster
                if d < (0.85 * (r + orad) if touching else far + ofar + 2):
                    return True
    return False
