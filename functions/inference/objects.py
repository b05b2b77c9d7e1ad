"""Detected objects as columns: what a model returns for a tile (tile pixels) and what
the engine keeps (level-0 pixels). Polygons are (k, 2) x, y arrays, open rings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Objects:
    """n objects: outline, centroid, confidence, class index, area and measurements."""

    polygons: list[np.ndarray]
    centroid: np.ndarray  # (n, 2) float64 x, y
    confidence: np.ndarray  # (n,) float32 in [0, 1]
    label: np.ndarray  # (n,) int16 index into the model's classes
    area_um2: np.ndarray  # (n,) float64
    measurements: dict[str, np.ndarray] = field(default_factory=dict)
    tile: np.ndarray | None = None  # (n, 2) int32 (col, row) of the tile kept from

    def __post_init__(self) -> None:
        n = len(self.polygons)
        sizes = {
            "centroid": len(self.centroid),
            "confidence": len(self.confidence),
            "label": len(self.label),
            "area_um2": len(self.area_um2),
            **{f"measurements[{k!r}]": len(v) for k, v in self.measurements.items()},
        }
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"{n} polygons but column lengths {wrong}")

    def __len__(self) -> int:
        return len(self.polygons)

    def __repr__(self) -> str:
        return f"Objects({len(self)} objects, measurements={sorted(self.measurements)})"

    @classmethod
    def empty(cls, measurements: Sequence[str] = ()) -> Objects:
        return cls(
            polygons=[],
            centroid=np.empty((0, 2)),
            confidence=np.empty(0, np.float32),
            label=np.empty(0, np.int16),
            area_um2=np.empty(0),
            measurements={name: np.empty(0) for name in measurements},
            tile=np.empty((0, 2), np.int32),
        )

    def select(self, keep: np.ndarray) -> Objects:
        """The objects where boolean `keep` is true (or at integer positions `keep`)."""
        index = np.flatnonzero(keep) if keep.dtype == bool else np.asarray(keep, int)
        return Objects(
            polygons=[self.polygons[i] for i in index],
            centroid=self.centroid[index],
            confidence=self.confidence[index],
            label=self.label[index],
            area_um2=self.area_um2[index],
            measurements={k: v[index] for k, v in self.measurements.items()},
            tile=None if self.tile is None else self.tile[index],
        )

    def bboxes(self) -> np.ndarray:
        """(n, 4) float64 x0, y0, x1, y1 of each polygon."""
        if not self.polygons:
            return np.empty((0, 4))
        return np.array(
            [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p in self.polygons]
        )

    def transformed(
        self, offset: tuple[float, float], scale: float, tile: tuple[int, int]
    ) -> Objects:
        """Tile pixels -> level-0 pixels: ``(p + offset) * scale``, tagged with `tile`."""
        shift = np.asarray(offset, float)
        return Objects(
            polygons=[(p + shift) * scale for p in self.polygons],
            centroid=(self.centroid + shift) * scale,
            confidence=self.confidence,
            label=self.label,
            area_um2=self.area_um2,
            measurements=self.measurements,
            tile=np.tile(np.asarray(tile, np.int32), (len(self), 1)),
        )


def concat(parts: Sequence[Objects], measurements: Sequence[str] = ()) -> Objects:
    """All objects of `parts`, in order (measurement columns as in the first part)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Objects.empty(measurements)
    names = list(parts[0].measurements)
    return Objects(
        polygons=[poly for p in parts for poly in p.polygons],
        centroid=np.concatenate([p.centroid for p in parts]),
        confidence=np.concatenate([p.confidence for p in parts]),
        label=np.concatenate([p.label for p in parts]),
        area_um2=np.concatenate([p.area_um2 for p in parts]),
        measurements={k: np.concatenate([p.measurements[k] for p in parts]) for k in names},
        tile=np.concatenate(
            [p.tile if p.tile is not None else np.full((len(p), 2), -1, np.int32) for p in parts]
        ),
    )
