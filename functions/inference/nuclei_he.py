"""The builtin `nuclei-he` model: HistomicsTK's nuclei detection on H&E, no weights.

Per tile: stain images through the slide's colour table (Reinhard + deconvolution),
nuclear foreground, multi-scale DoG, seeds, marker watershed (see `nuclei`), then
outlines and measurements of the nuclei the engine keeps.

Confidence (documented, in [0, 1]): ``solidity * (1 + contrast) / 2`` where
``contrast = clip(1 - mean_hematoxylin / foreground_threshold, 0, 1)``. A compact,
darkly stained nucleus scores near 1; a pale one (mean intensity near the threshold)
or a ragged one (several nuclei merged, debris) scores near or below 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.arrays import get_backend
from functions.inference.measure import KeepFn, label_stats, labels_to_objects
from functions.inference.models import ModelIO
from functions.inference.nuclei import (
    any_pool,
    basins,
    cdog,
    enlarge,
    foreground,
    seeds,
    split_and_filter,
)
from functions.inference.objects import Objects
from functions.inference.stains import (
    REFERENCE_MU_LAB,
    REFERENCE_STD_LAB,
    StainTable,
    apply_lut,
    stain_lut,
)

NAME = "nuclei-he"
MPP = 0.5
TILE = 1024
MEASUREMENTS = (  # the engine adds centroid_x and centroid_y (level-0 px)
    "area_um2",
    "mean_hematoxylin",
    "mean_eosin",
    "eccentricity",
    "solidity",
)


class NucleiHEParams(BaseModel):
    """Parameters of `nuclei-he`, named and defaulted as HistomicsTK's NucleiDetection
    (pixel lengths are at the model's 0.5 µm/px)."""

    model_config = ConfigDict(extra="forbid")

    foreground_threshold: float = Field(
        default=60,
        ge=0,
        le=255,
        description="Hematoxylin intensity below which a pixel is nuclear.",
    )
    min_radius: float = Field(default=6, gt=0, le=100, description="Smallest nuclear radius (px).")
    max_radius: float = Field(default=20, gt=0, le=100, description="Largest nuclear radius (px).")
    local_max_search_radius: float = Field(
        default=10,
        gt=0,
        le=100,
        description="Radius within which a seed is the response's maximum (px).",
    )
    min_nucleus_area: int = Field(default=80, ge=1, description="Smaller objects are dropped (px).")
    reference_mu_lab: tuple[float, float, float] = Field(
        default=REFERENCE_MU_LAB, description="Reinhard target mean (l-alpha-beta)."
    )
    reference_std_lab: tuple[float, float, float] = Field(
        default=REFERENCE_STD_LAB, description="Reinhard target standard deviation (l-alpha-beta)."
    )
    first_octave: int = Field(
        default=1,
        ge=0,
        le=1,
        description="1: the DoG scale space, its seeds and the watershed work on the tile "
        "halved (2x2 means), as HistomicsTK's cdog does from its second octave on; the "
        "foreground, outlines and areas stay at full resolution (about twice as fast, "
        "the same nuclei within 2 px); 0: HistomicsTK's full-resolution first octave.",
    )
    polygon_tolerance: float = Field(
        default=0.5, ge=0, le=5, description="Outline simplification (Douglas-Peucker, px)."
    )

    def overlap(self) -> int:
        """Tile overlap: twice the largest nucleus' diameter, rounded up to 16."""
        return int(math.ceil(4 * self.max_radius / 16) * 16)


def declaration(params: NucleiHEParams | None = None) -> ModelIO:
    params = params or NucleiHEParams()
    return ModelIO(
        name=NAME,
        kind="segmentation",
        mpp=MPP,
        tile=TILE,
        overlap=params.overlap(),
        classes=("nucleus",),
        measurements=MEASUREMENTS,
        batch=1,
    )


class NucleiHE:
    """`nuclei-he` for one slide: its colour table built from the slide's statistics."""

    def __init__(
        self,
        params: NucleiHEParams,
        src_mu: Sequence[float],
        src_sigma: Sequence[float],
        *,
        device: Literal["cpu", "gpu"] = "cpu",
    ) -> None:
        if params.min_radius > params.max_radius:
            raise ValueError(
                f"min_radius {params.min_radius} exceeds max_radius {params.max_radius}"
            )
        self.params = params
        self.io = declaration(params)
        self.be = get_backend(device)
        stats = (tuple(src_mu), tuple(src_sigma))
        target = {"target_mu": params.reference_mu_lab, "target_sigma": params.reference_std_lab}
        # The GPU builds the whole colour table at once (milliseconds there); the CPU
        # fills it with the colours tiles bring.
        self.lut = stain_lut(*stats, **target, xp=self.be.xp) if self.be.name == "gpu" else None
        self.table = StainTable(*stats, **target) if self.lut is None else None

    def __repr__(self) -> str:
        return f"NucleiHE({self.be.name}, {self.params!r})"

    def segment(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label image (host int32), hematoxylin and eosin (host uint8) of one tile."""
        p, be = self.params, self.be
        if self.table is not None:
            hema, eosin = self.table(rgb)
        else:
            hema, eosin = apply_lut(be.xp, rgb, self.lut)
        mask = foreground(be, hema, p.foreground_threshold)
        if not bool(mask.any()):
            empty = np.zeros(mask.shape, np.int32)
            return empty, be.to_numpy(hema), be.to_numpy(eosin)
        sigmas = (p.min_radius / math.sqrt(2), p.max_radius / math.sqrt(2))
        response = cdog(be, hema, mask, *sigmas, first_octave=p.first_octave)
        # Seeds and basins at the response's resolution; the foreground, outlines and
        # areas stay at full resolution.
        factor = 2**p.first_octave
        coarse = any_pool(be.xp, mask, factor)
        markers = seeds(be, response, coarse, p.local_max_search_radius / factor)
        flooded = basins(be.to_numpy(response), be.to_numpy(coarse), be.to_numpy(markers))
        full = enlarge(np, flooded, factor, mask.shape) * be.to_numpy(mask)
        labels = split_and_filter(full, p.min_nucleus_area)
        return labels, be.to_numpy(hema), be.to_numpy(eosin)

    def predict(self, tiles: Sequence[np.ndarray], keep: Sequence[KeepFn]) -> list[Objects]:
        return [self._predict_one(tile, k) for tile, k in zip(tiles, keep, strict=True)]

    def _predict_one(self, rgb: np.ndarray, keep: KeepFn) -> Objects:
        labels, hema, eosin = self.segment(rgb)
        stats = label_stats(labels, {"hematoxylin": hema, "eosin": eosin})
        chosen = keep(stats.centroid, stats.bbox)
        objects, solidity = labels_to_objects(
            labels, stats, chosen, mpp=MPP, tolerance=self.params.polygon_tolerance
        )
        mean_h = stats.means["hematoxylin"][chosen]
        contrast = np.clip(1 - mean_h / self.params.foreground_threshold, 0, 1)
        objects.confidence = (solidity * (1 + contrast) / 2).astype(np.float32)
        objects.measurements = {
            "area_um2": objects.area_um2,
            "mean_hematoxylin": mean_h,
            "mean_eosin": stats.means["eosin"][chosen],
            "eccentricity": stats.eccentricity[chosen],
            "solidity": solidity,
        }
        return objects
