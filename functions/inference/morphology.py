"""Binary morphology with disks, the nuclei kernels' primitives: libvips' vectorised
`morph` on the CPU (exact, and ~30x faster than scipy's binary ops with a disk),
cupyx.scipy.ndimage on the GPU. Same results on both: pixels outside the image are
background for dilations and foreground for erosions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.arrays import Backend
from functions.slides.vips import pyvips as quiet_pyvips


def disk_offsets(radius: float, *, closed: bool = True) -> np.ndarray:
    """Boolean (2R+1, 2R+1) footprint of offsets with dx^2 + dy^2 <= radius^2 (closed)
    or < radius^2 (open), R = ceil(radius)."""
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = xx * xx + yy * yy
    return (d2 <= radius * radius) if closed else (d2 < radius * radius)  # type: ignore[no-any-return]


def _vips_image(mask: np.ndarray) -> Any:
    """A 0/255 uchar libvips image over a boolean array (pyvips keeps the buffer alive)."""
    pyvips = quiet_pyvips()

    h, w = mask.shape
    pixels = np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255)
    image = pyvips.Image.new_from_memory(pixels.data, w, h, 1, "uchar")
    return image


def _vips_op(image: Any, radius: float, op: str, *, closed: bool = True) -> Any:
    """A lazy libvips morph of a 0/255 image: padded as background (dilate) or
    foreground (erode), the disk as a 255/128 ("don't care") mask, cropped back."""
    pyvips = quiet_pyvips()

    footprint = disk_offsets(radius, closed=closed)
    r = footprint.shape[0] // 2
    w, h = image.width, image.height
    pad = 255 if op == "erode" else 0
    padded = image.embed(r, r, w + 2 * r, h + 2 * r, extend="background", background=[pad])
    weights = np.where(footprint, 255, 128)
    return padded.morph(pyvips.Image.new_from_array(weights.tolist()), op).crop(r, r, w, h)


def _to_mask(image: Any) -> np.ndarray:
    out = np.ndarray(
        buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width)
    )
    return out > 0


def close_open(be: Backend, mask: Any, radius: float) -> Any:
    """Closing then opening with a closed disk (one libvips pipeline on the CPU)."""
    if be.name != "cpu":
        return dilate(be, erode(be, erode(be, dilate(be, mask, radius), radius), radius), radius)
    image = _vips_image(mask)
    for op in ("dilate", "erode", "erode", "dilate"):
        image = _vips_op(image, radius, op)
    return _to_mask(image)


def dilate(be: Backend, mask: Any, radius: float) -> Any:
    """Binary dilation by a closed disk of `radius`."""
    footprint = disk_offsets(radius)
    if be.name == "cpu":
        return _to_mask(_vips_op(_vips_image(mask), radius, "dilate"))
    return be.ndimage.binary_dilation(mask, structure=be.asarray(footprint), border_value=0)


def erode(be: Backend, mask: Any, radius: float, *, closed: bool = True) -> Any:
    """Binary erosion by a disk of `radius` (closed, or open: distance < radius)."""
    footprint = disk_offsets(radius, closed=closed)
    if be.name == "cpu":
        return _to_mask(_vips_op(_vips_image(mask), radius, "erode", closed=closed))
    return be.ndimage.binary_erosion(mask, structure=be.asarray(footprint), border_value=1)


def fill_holes(be: Backend, mask: Any) -> Any:
    """Background regions not connected (4-connectivity) to the image edge become
    foreground (scipy's ``binary_fill_holes``, through one labelling)."""
    if be.name != "cpu":
        return be.ndimage.binary_fill_holes(mask)
    from scipy import ndimage

    labels, n = ndimage.label(~mask)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(n + 1, bool)
    outside[edge] = True
    outside[0] = False
    return ~outside[labels]


def within(be: Backend, mask: Any, distances: Sequence[float]) -> list[Any]:
    """For each distance d, the pixels nearer than d to the background (Euclidean,
    pixels outside the image are not background): ``edt(mask) < d``."""
    out: list[Any] = []
    if be.name != "cpu":
        edt = be.ndimage.distance_transform_edt(mask)
        return [edt < d for d in distances]
    source = _vips_image(mask)
    for d in distances:
        if math.isinf(d):
            out.append(np.ones(mask.shape, bool))
        elif d <= 0:
            out.append(np.zeros(mask.shape, bool))
        else:  # edt >= d  <=>  every pixel closer than d is foreground
            out.append(~_to_mask(_vips_op(source, d, "erode", closed=False)))
    return out
