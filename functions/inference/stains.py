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

_RGB2LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
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


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Ruderman's l-alpha-beta of (..., 3) RGB values (HistomicsTK ``rgb_to_lab``)."""
    lms = np.asarray(rgb, np.float64) @ _RGB2LMS.T
    lms[lms == 0] = np.spacing(1)
    return np.log(lms) @ _LMS2LAB.T  # type: ignore[no-any-return]


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_lab` (unclipped float RGB)."""
    return np.exp(np.asarray(lab, np.float64) @ _LAB2LMS.T) @ _LMS2RGB.T  # type: ignore[no-any-return]


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
    w: np.ndarray | None = None,
) -> np.ndarray:
    """Reinhard-normalise then colour-deconvolve (..., 3) uint8 RGB, pixel by pixel.

    Returns
    -------
    (..., 3) uint8 ndarray
        Stain images on HistomicsTK's 0-255 intensity scale (255: no stain): channel 0
        hematoxylin, 1 eosin, 2 the residual.
    """
    lab = rgb_to_lab(rgb)
    lab = (lab - np.asarray(src_mu)) / np.asarray(src_sigma)
    lab = lab * np.asarray(target_sigma) + np.asarray(target_mu)
    normalized = np.clip(lab_to_rgb(lab), 0, 255).astype(np.uint8)
    q = np.linalg.pinv(stain_matrix() if w is None else w)
    # rgb_to_sda with I_0=None: (I + 1) against 256, scaled so 255 is full darkness.
    sda = np.maximum(-np.log((normalized + 1.0) / 256.0) * 255.0 / np.log(256.0), 0)
    stains = 256.0 ** (1.0 - (sda @ q.T) / 255.0) - 1.0
    return np.clip(stains, 0, 255).astype(np.uint8)


def stain_lut(
    src_mu: tuple[float, ...],
    src_sigma: tuple[float, ...],
    *,
    target_mu: tuple[float, ...] = REFERENCE_MU_LAB,
    target_sigma: tuple[float, ...] = REFERENCE_STD_LAB,
) -> np.ndarray:
    """(2, 2**24) uint8 table: hematoxylin and eosin intensity of every 24-bit colour
    (index ``r << 16 | g << 8 | b``) after `normalize_deconvolve`. Built in chunks of a
    million colours (about 100 MB of temporaries at a time), in about a second."""
    lut = np.empty((2, 1 << 24), np.uint8)
    for start in range(0, 1 << 24, _LUT_CHUNK):
        index = np.arange(start, start + _LUT_CHUNK, dtype=np.uint32)
        rgb = np.stack([(index >> 16) & 255, (index >> 8) & 255, index & 255], axis=1)
        stains = normalize_deconvolve(
            rgb, src_mu, src_sigma, target_mu=target_mu, target_sigma=target_sigma
        )
        lut[:, start : start + _LUT_CHUNK] = stains[:, :2].T
    return lut


def apply_lut(xp: Any, rgb: Any, lut: Any) -> tuple[Any, Any]:
    """Hematoxylin and eosin (H, W) uint8 images of (H, W, 3) uint8 `rgb` through `lut`
    (arrays of module `xp`: numpy or cupy)."""
    rgb = xp.asarray(rgb)
    index = (rgb[..., 0].astype(xp.uint32) << 16) | (rgb[..., 1].astype(xp.uint32) << 8)
    index |= rgb[..., 2]
    return lut[0][index], lut[1][index]
