"""Nuclei in a hematoxylin image, HistomicsTK's recipe (Al-Kofahi et al.) as array
kernels written once for numpy/scipy and cupy/cupyx through `common.arrays.Backend`.

1. nuclear foreground: hematoxylin intensity below `foreground_threshold`, then
   closing and opening with a radius-3 disk, holes filled (`foreground`);
2. a scale-adaptive multi-scale difference-of-Gaussians blob response with sigma from
   ``min_radius / sqrt(2)`` to ``max_radius / sqrt(2)`` (`cdog`, HistomicsTK's octave
   scheme, float32);
3. seeds: foreground pixels that are the maximum of the response within
   `local_max_search_radius` (the peaks of HistomicsTK's local-maximum clustering);
4. a marker watershed of the response inside the foreground, fragments split,
   objects under `min_nucleus_area` dropped (`split_nuclei`, on the host: no GPU
   watershed exists in cucim).

References
----------
Y. Al-Kofahi et al., "Improved automatic detection and segmentation of cell nuclei in
histopathology images", IEEE Trans. Biomed. Eng. 57(4), 2010, doi:10.1109/TBME.2009.2035102.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from common.arrays import Backend

#: Gaussian kernels are cut at this many sigmas (scipy's default is 4; the response
#: changes by < 1e-3 of its range and the filters run a quarter faster).
TRUNCATE = 3.0


def disk(radius: int) -> np.ndarray:
    """skimage's ``disk(radius)``: offsets with dx^2 + dy^2 <= radius^2."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy) <= radius * radius  # type: ignore[no-any-return]


def foreground(be: Backend, hema: Any, threshold: float, radius: int = 3) -> Any:
    """Nuclear foreground of a (H, W) uint8 hematoxylin image (dark = stained).

    Closing then opening with a `radius` disk, then holes filled.
    """
    from functions.inference.morphology import close_open, fill_holes

    return fill_holes(be, close_open(be, be.xp.asarray(hema) < threshold, radius))


def cdog(
    be: Backend,
    image: Any,
    mask: Any,
    sigma_min: float,
    sigma_max: float,
    levels: int = 3,
    *,
    first_octave: int = 0,
) -> Any:
    """Scale-adaptive multi-scale difference of Gaussians (HistomicsTK ``cdog``).

    Parameters
    ----------
    be : Backend
    image : (H, W) array
        Hematoxylin intensity (objects dark on a light background).
    mask : (H, W) bool array
        Nuclear foreground; a pixel's usable scales stop at twice its distance to the
        background.
    sigma_min, sigma_max : float
        Scale range (blob radius / sqrt(2)).
    levels : int
        Scales per octave; each octave works on an image halved again.
    first_octave : int
        1 starts the scale space on the image halved (2x2 means), as HistomicsTK
        does from the second octave on; 0 starts at full resolution.

    Returns
    -------
    (H / 2**first_octave, W / 2**first_octave) float32 array
        The largest DoG response over the usable scales (0 where none), at the first
        octave's resolution.
    """
    from functions.inference.morphology import within

    xp, nd = be.xp, be.ndimage
    image = xp.asarray(image, dtype=xp.float32)
    ratio = 2.0 ** (1.0 / levels)
    k = int(math.log(sigma_max / sigma_min, ratio)) + 1
    # HistomicsTK masks scale sigma where clip(2 * distance to background, sigma_min,
    # sigma_max) < sigma: pixels nearer the background than sigma / 2.
    sigmas = [sigma_min * ratio**i for i in range(k + 1)]
    near = within(be, mask, [s / 2 if s <= sigma_max else math.inf for s in sigmas])
    low = xp.float32(np.finfo(np.float32).min)
    n_level, n_octave = 0, first_octave
    start = image
    for _ in range(first_octave):  # a 2x2 mean blurs by sigma 0.5 (in its input's pixels)
        h, w = start.shape[0] // 2 * 2, start.shape[1] // 2 * 2
        start = start[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    done = sum((0.5 * 2.0**j) ** 2 for j in range(first_octave))  # variance, full-res px
    first = math.sqrt(max(sigma_min**2 - done, 0.0)) / 2.0**first_octave
    best = xp.full(start.shape, low, xp.float32)
    octave_best = best.copy()
    sigma, gauss = sigma_min, nd.gaussian_filter(start, first, truncate=TRUNCATE)
    for i in range(k + 1):
        sigma_next = sigma * ratio
        step = math.sqrt(sigma_next**2 - sigma**2) / 2.0**n_octave
        gauss_next = nd.gaussian_filter(gauss, step, truncate=TRUNCATE)
        dog = gauss_next - gauss
        if i > 0:  # clip(..., sigma_min, ...) never masks the first scale
            step_px = 2**n_octave
            dog[near[i][::step_px, ::step_px][: dog.shape[0], : dog.shape[1]]] = low
        xp.maximum(octave_best, dog, out=octave_best)
        sigma, gauss, n_level = sigma_next, gauss_next, n_level + 1
        if i == k or n_level == levels:
            up = _upsample(xp, octave_best, n_octave - first_octave, best.shape)
            xp.maximum(best, up, out=best)
            if n_level == levels:
                gauss = gauss_next[::2, ::2]
                octave_best = octave_best[::2, ::2].copy()
                n_level, n_octave = 0, n_octave + 1
    best[best == low] = 0
    return best


def _upsample(xp: Any, array: Any, octave: int, shape: tuple[int, ...]) -> Any:
    """Nearest-neighbour enlargement by 2**octave, cut to `shape`."""
    if octave == 0:
        return array
    f = 2**octave
    return xp.repeat(xp.repeat(array, f, axis=0), f, axis=1)[: shape[0], : shape[1]]


def seeds(be: Backend, response: Any, mask: Any, radius: float) -> Any:
    """Foreground pixels that hold the largest response within `radius` (background
    counts as the image's minimum), labelled so touching peak pixels form one seed."""
    xp, nd = be.xp, be.ndimage
    floor = response.min()
    masked = xp.where(mask, response, floor)
    # A disk maximum is the maximum of the square inscribed in the disk: a separable
    # filter that leaves few candidates for the exact disk test.
    inscribed = 2 * int(radius / math.sqrt(2)) + 1
    local = (masked >= nd.maximum_filter(masked, size=inscribed)) & mask & (masked > floor)
    ys, xs = xp.nonzero(local)
    r = int(radius + 0.5)
    dy, dx = np.nonzero(disk(r) if r == radius else _disk_float(radius))
    padded = xp.pad(masked, r, constant_values=floor)  # no index clipping below
    offsets = be.asarray((dy * (masked.shape[1] + 2 * r) + dx).astype(np.int64))
    flat = padded.ravel()
    corner = ys.astype(xp.int64) * (masked.shape[1] + 2 * r) + xs  # (y - r + r, x - r + r)
    keep = xp.ones(ys.shape, bool)
    for start in range(0, int(ys.shape[0]), 4096):  # bounded (n, taps) temporaries
        block = corner[start : start + 4096]
        peak = masked[ys[start : start + 4096], xs[start : start + 4096]]
        keep[start : start + 4096] = flat[block[:, None] + offsets].max(axis=1) <= peak
    peaks = xp.zeros(masked.shape, bool)
    peaks[ys[keep], xs[keep]] = True
    labels, _ = nd.label(peaks, structure=xp.ones((3, 3), bool))
    return labels


def _disk_float(radius: float) -> np.ndarray:
    r = int(radius + 0.5)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius  # type: ignore[no-any-return]


def basins(response: Any, mask: Any, markers: Any) -> np.ndarray:
    """Marker watershed of `-response` inside `mask` (host arrays; labels of markers)."""
    from skimage.segmentation import watershed

    if not markers.any():
        return np.zeros(mask.shape, np.int32)
    return watershed(-response, markers, mask=mask)  # type: ignore[no-any-return]


def split_and_filter(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Each label's disconnected fragments become objects of their own; objects under
    `min_area` pixels are dropped; labels renumbered 1..n."""
    from skimage.measure import label

    labels = label(labels, connectivity=2, background=0)
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area
    small[0] = True
    keep = np.cumsum(~small).astype(np.int32)
    keep[small] = 0
    return keep[labels]  # type: ignore[no-any-return]


def any_pool(xp: Any, mask: Any, factor: int) -> Any:
    """A boolean mask shrunk by `factor`: a pixel is set when any pixel it covers is."""
    if factor == 1:
        return mask
    h, w = mask.shape[0] // factor * factor, mask.shape[1] // factor * factor
    return mask[:h, :w].reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


def enlarge(xp: Any, labels: Any, factor: int, shape: tuple[int, ...]) -> Any:
    """Labels enlarged by pixel replication to `shape` (edge rows/columns repeated)."""
    if factor == 1:
        return labels
    big = xp.repeat(xp.repeat(labels, factor, axis=0), factor, axis=1)
    pad = ((0, max(0, shape[0] - big.shape[0])), (0, max(0, shape[1] - big.shape[1])))
    return xp.pad(big, pad, mode="edge")[: shape[0], : shape[1]]
