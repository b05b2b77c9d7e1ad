"""H&E colour: Reinhard normalisation and colour deconvolution as HistomicsTK does them,
folded into one lookup table per slide.

Both steps are functions of a pixel's colour alone once the source statistics are fixed
(they are computed once per slide from tissue pixels), so the whole chain
``uint8 RGB -> Reinhard (l-alpha-beta) -> uint8 RGB -> deconvolution -> uint8 stains`` is
evaluated once for each of the 2**24 colours and every tile then costs one gather per
pixel. The table is exactly the per-pixel computation (see `normalize_deconvolve`).

References
----------
E. Reinhard et al., "Color transfer between images", IEEE CG&A 21(5), 2001,
doi:10.1109/38.946629. A. C. Ruifrok and D. A. Johnston, "Quantification of
histochemical staining by color deconvolution", Anal. Quant. Cytol. Histol. 23(4), 2001.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Stain vectors (optical density of a unit of stain in R, G, B), HistomicsTK's
#: ``stain_color_map``; the third column of the matrix is their normalised cross product.
HEMATOXYLIN = (0.65, 0.70, 0.29)
EOSIN = (0.07, 0.99, 0.11)
#: HistomicsTK NucleiDetection's reference statistics (l-alpha-beta mean and std).
REFERENCE_MU_LAB = (8.63234435, -0.11501964, 0.03868433)
REFERENCE_STD_LAB = (0.57506023, 0.10403329, 0.01364062)

_RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LMS2LAB = np.diag([1 / 3**0.5, 1 / 6**0.5, 1 / 2**0.5]) @ np.array(
    [[1, 1, 1], [1, 1, -2], [1, -1, 0]]
)
_LMS2RGB = np.linalg.inv(_RGB2LMS)
_LAB2LMS = np.linalg.inv(_LMS2LAB)
_LUT_CHUNK = 1 << 20


def stain_matrix(
    first: tuple[float, float, float] = HEMATOXYLIN,
    second: tuple[float, float, float] = EOSIN,
) -> np.ndarray:
    """The (3, 3) stain matrix: unit stain vectors as columns, the third their cross
    product (HistomicsTK's ``complement_stain_matrix`` then ``normalize``)."""
    a, b = np.asarray(first, float), np.asarray(second, float)
    c = np.cross(a, b)
    w = np.stack([a, b, c / np.linalg.norm(c)], axis=1)
    return w / np.linalg.norm(w, axis=0)


def _mix(matrix: np.ndarray, channels: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """``matrix @ [c0, c1, c2]`` channel by channel: for (N, 3) data a 3x3 matmul goes
    through BLAS's small-matrix path, several times slower than three fused sums."""
    c0, c1, c2 = channels
    m = matrix.tolist()
    return (
        m[0][0] * c0 + m[0][1] * c1 + m[0][2] * c2,
        m[1][0] * c0 + m[1][1] * c1 + m[1][2] * c2,
        m[2][0] * c0 + m[2][1] * c1 + m[2][2] * c2,
    )


def _channels(xp: Any, rgb: Any) -> tuple[Any, Any, Any]:
    rgb = xp.asarray(rgb)
    return tuple(rgb[..., i].astype(xp.float64) for i in range(3))  # type: ignore[return-value]


def rgb_to_lab(rgb: np.ndarray, xp: Any = np) -> np.ndarray:
    """Ruderman's l-alpha-beta of (..., 3) RGB values (HistomicsTK ``rgb_to_lab``)."""
    lms = _mix(_RGB2LMS, _channels(xp, rgb))
    tiny = float(np.spacing(1))
    logs = tuple(xp.log(xp.where(c == 0, tiny, c)) for c in lms)
    return xp.stack(_mix(_LMS2LAB, logs), axis=-1)  # type: ignore[no-any-return]


def lab_to_rgb(lab: np.ndarray, xp: Any = np) -> np.ndarray:
    """Inverse of `rgb_to_lab` (unclipped float RGB)."""
    lms = tuple(xp.exp(c) for c in _mix(_LAB2LMS, _channels(xp, lab)))
    return xp.stack(_mix(_LMS2RGB, lms), axis=-1)  # type: ignore[no-any-return]


def reinhard_stats(pixels: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and standard deviation of l-alpha-beta over (N, 3) uint8 tissue pixels.

    Raises
    ------
    ValueError
        If `pixels` is not (N, 3) with N >= 2.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 3 or len(pixels) < 2:
        raise ValueError(f"pixels must be (N >= 2, 3), got shape {pixels.shape}")
    lab = rgb_to_lab(pixels)
    return tuple(float(v) for v in lab.mean(0)), tuple(float(v) for v in lab.std(0))


def normalize_deconvolve(
    rgb: np.ndarray,
    src_mu: tuple[float, ...],
    src_sigma: tuple[float, ...],
    *,
    target_mu: tuple[float, ...] = REFERENCE_MU_LAB,
    target_sigma: tuple[float, ...] = REFERENCE_STD_LAB,
    xp: Any = np,
) -> np.ndarray:
    """Reinhard-normalise then colour-deconvolve (..., 3) uint8 RGB, pixel by pixel,
    in float64 as HistomicsTK (``reinhard`` then ``color_deconvolution(im, w)``).

    Returns
    -------
    (..., 3) uint8 ndarray
        Stain images on HistomicsTK's 0-255 intensity scale (255: no stain): channel 0
        hematoxylin, 1 eosin, 2 the residual.
    """
    lab = rgb_to_lab(rgb, xp)
    scale = xp.asarray(target_sigma) / xp.asarray(src_sigma)
    lab = (lab - xp.asarray(src_mu)) * scale + xp.asarray(target_mu)
    normalized = xp.clip(lab_to_rgb(lab, xp), 0, 255).astype(xp.uint8)
    q = np.linalg.pinv(stain_matrix())
    # rgb_to_sda with I_0=None: (I + 1) against 256, scaled so 255 is full darkness.
    sda = tuple(
        xp.maximum(-xp.log((c + 1.0) / 256.0) * (255.0 / np.log(256.0)), 0)
        for c in _channels(xp, normalized)
    )
    # sda_to_rgb: 256 ** (1 - sda / 255) - 1, written with exp (the power is slower).
    stains = [
        xp.clip(xp.exp((1.0 - c / 255.0) * np.log(256.0)) - 1.0, 0, 255).astype(xp.uint8)
        for c in _mix(q, sda)
    ]
    return xp.stack(stains, axis=-1)  # type: ignore[no-any-return]


def stain_lut(
    src_mu: tuple[float, ...],
    src_sigma: tuple[float, ...],
    *,
    target_mu: tuple[float, ...] = REFERENCE_MU_LAB,
    target_sigma: tuple[float, ...] = REFERENCE_STD_LAB,
    xp: Any = np,
) -> Any:
    """(2, 2**24) uint8 table: hematoxylin and eosin intensity of every 24-bit colour
    (index ``r << 16 | g << 8 | b``) after `normalize_deconvolve`, built on `xp`'s
    device in chunks of a million colours (the GPU path builds it whole at once; the
    CPU path fills it lazily with `StainTable`)."""
    lut = xp.empty((2, 1 << 24), xp.uint8)
    for start in range(0, 1 << 24, _LUT_CHUNK):
        index = xp.arange(start, start + _LUT_CHUNK, dtype=xp.uint32)
        stains = normalize_deconvolve(
            _unpack(xp, index),
            src_mu,
            src_sigma,
            target_mu=target_mu,
            target_sigma=target_sigma,
            xp=xp,
        )
        lut[:, start : start + _LUT_CHUNK] = stains[:, :2].T
    return lut


def _pack(xp: Any, rgb: Any) -> Any:
    rgb = xp.asarray(rgb)
    index = (rgb[..., 0].astype(xp.uint32) << 16) | (rgb[..., 1].astype(xp.uint32) << 8)
    index |= rgb[..., 2]
    return index


def _unpack(xp: Any, index: Any) -> Any:
    return xp.stack([(index >> 16) & 255, (index >> 8) & 255, index & 255], axis=-1).astype(
        xp.uint8
    )


class StainTable:
    """`stain_lut` filled on demand, for the CPU: only colours a tile holds and no
    earlier tile did are computed (a slide uses a small part of the 2**24 colours)."""

    def __init__(
        self,
        src_mu: tuple[float, ...],
        src_sigma: tuple[float, ...],
        *,
        target_mu: tuple[float, ...] = REFERENCE_MU_LAB,
        target_sigma: tuple[float, ...] = REFERENCE_STD_LAB,
    ) -> None:
        self._stats = (src_mu, src_sigma, target_mu, target_sigma)
        self.known = np.zeros(1 << 24, bool)
        self.table = np.zeros((2, 1 << 24), np.uint8)

    def __repr__(self) -> str:
        return f"StainTable({int(self.known.sum())} colours computed)"

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hematoxylin and eosin (H, W) uint8 images of (H, W, 3) uint8 `rgb`."""
        index = _pack(np, rgb)
        missing = index[~self.known[index]]
        if missing.size:
            new = np.unique(missing)
            mu, sigma, target_mu, target_sigma = self._stats
            stains = normalize_deconvolve(
                _unpack(np, new), mu, sigma, target_mu=target_mu, target_sigma=target_sigma
            )
            self.table[:, new] = stains[:, :2].T
            self.known[new] = True
        return self.table[0][index], self.table[1][index]


def apply_lut(xp: Any, rgb: Any, lut: Any) -> tuple[Any, Any]:
    """Hematoxylin and eosin (H, W) uint8 images of (H, W, 3) uint8 `rgb` through `lut`
    (arrays of module `xp`: numpy or cupy)."""
    index = _pack(xp, rgb)
    return lut[0][index], lut[1][index]
