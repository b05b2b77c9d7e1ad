"""What the engine knows of a model: its declaration (resolution, tile, overlap, output
kind, classes), declared once, and one method from tiles to objects (TIAToolbox's
engine/model split). Builtin models and ONNX models both fit it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from functions.inference.measure import KeepFn
from functions.inference.objects import Objects

OutputKind = Literal["segmentation", "detection", "classification"]
#: Class colours for viewers and QuPath (cycled).
PALETTE = ("#2f6fd6", "#d63f2f", "#2fa84f", "#c79a1a", "#8a3fd6", "#1aa7b5", "#d6378f")


@dataclass(frozen=True)
class ModelIO:
    """A model's declaration: the engine tiles, batches and stitches from this alone.

    `mpp` is the resolution its tiles are read at, `tile` their side in pixels,
    `overlap` the pixels shared by neighbouring tiles (at least twice the largest
    object, so an object cut by one tile's edge is whole in its neighbour), `batch`
    how many tiles one call takes.
    """

    name: str
    kind: OutputKind
    mpp: float
    tile: int
    overlap: int
    classes: tuple[str, ...]
    measurements: tuple[str, ...] = ()
    batch: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"need 0 <= overlap < tile, got {self.overlap} and {self.tile}")
        if self.mpp <= 0 or self.batch < 1 or not self.classes:
            raise ValueError("mpp must be positive, batch >= 1 and classes non-empty")

    def color(self, label: int) -> str:
        return PALETTE[label % len(PALETTE)]


class TileModel(Protocol):
    """Tiles in, objects out (tile pixel coordinates)."""

    io: ModelIO

    def predict(self, tiles: Sequence[np.ndarray], keep: Sequence[KeepFn]) -> list[Objects]:
        """Objects of each (tile, tile, 3) uint8 RGB tile; `keep[i]` says which of tile
        i's candidates (by centroid and box) are worth outlining and measuring."""
        ...
