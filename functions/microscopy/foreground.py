"""The labelled pixels of a batch of frames, as flat indices and as horizontal runs.

A :class:`Foreground` holds a zero-bordered ``(T, Y + 2, X + 2)`` label image (the
border lets neighbour lookups skip bounds checks), the flat indices of its labelled
pixels in raster order, and — computed once, on demand — its *runs*: maximal
horizontal stretches of one label in one row. A frame of 1024² px with a hundred cells
has about 300,000 labelled pixels but only ~10,000 runs, so everything that depends on
a pixel's position only (area, moments, bounding box, the rows' extremes of the convex
hull, tracking overlaps) is computed from runs, never from per-pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from functions.microscopy.components import component_labels


@dataclass(frozen=True)
class Runs:
    """Horizontal runs in raster order: frame, row, first and one-past-last column
    (unpadded coordinates) and label of each."""

    frame: np.ndarray
    row: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    label: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.stop - self.start

    def __len__(self) -> int:
        return len(self.label)

    def select(self, keep: Any) -> Runs:
        return Runs(
            self.frame[keep], self.row[keep], self.start[keep], self.stop[keep], self.label[keep]
        )


@dataclass
class Foreground:
    """Foreground pixels of a padded ``(T, Y + 2, X + 2)`` label batch, in flat order."""

    padded: np.ndarray  # (T, Y+2, X+2) labels, zero border around every frame
    index: np.ndarray  # flat indices into `padded` of labelled pixels
    label: np.ndarray  # their labels, in the label image's dtype
    n: int  # largest label
    #: the labels are the 8-connected components of the foreground: different labels
    #: never touch, so a labelled pixel's labelled neighbours all share its label
    separated: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> Foreground:
        """From an unpadded ``(T, Y, X)`` label image (copied into a padded one)."""
        if labels.ndim != 3:
            raise ValueError(f"labels must be (T, Y, X), got shape {labels.shape}")
        return cls.from_padded(np.pad(labels, ((0, 0), (1, 1), (1, 1))))

    @classmethod
    def from_padded(cls, padded: np.ndarray) -> Foreground:
        """From a label image that already has a zero border (not copied)."""
        if padded.ndim != 3:
            raise ValueError(f"labels must be (T, Y, X), got shape {padded.shape}")
        flat = padded.reshape(-1)
        index = np.flatnonzero(flat)
        label = flat[index]  # the image's own dtype: compared with it, never copied to int64
        return cls(padded, index, label, int(label.max()) if label.size else 0)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Foreground:
        """The 8-connected components of each frame of a ``(T, Y, X)`` bool mask.

        The same labels as ``scipy.ndimage.label`` with a 3 x 3 square in-plane (numbered
        in raster order of their first pixel, frames never connected), found from the
        mask's runs: runs of adjacent rows that touch (diagonally too) are joined by
        :func:`scipy.sparse.csgraph.connected_components`, so only the few thousand
        runs are compared and the label image is written at the labelled pixels only.
        """
        if mask.ndim != 3:
            raise ValueError(f"mask must be (T, Y, X), got shape {mask.shape}")
        padded = np.pad(mask.astype(bool, copy=False), ((0, 0), (1, 1), (1, 1)))
        flat = padded.reshape(-1).view(np.int8)
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # zero borders: starts, stops
        first, stop = edges[0::2], edges[1::2]
        length = stop - first
        run_label = component_labels(first, stop, padded.shape[2])
        starts = np.cumsum(length) - length
        index = np.repeat(first - starts, length) + np.arange(int(length.sum()))
        labels = np.zeros(padded.shape, dtype=np.int32)
        label = np.repeat(run_label.astype(np.int32), length)
        labels.reshape(-1)[index] = label
        n = int(run_label.max()) if len(run_label) else 0
        out = cls(labels, index, label, n, separated=True)
        out.__dict__["_run_starts"] = starts  # the runs are known: not found again
        out._cache["mask"] = padded  # the padded mask, for what needs only the mask
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        """Unpadded ``(T, Y, X)``."""
        t, h, w = self.padded.shape
        return t, h - 2, w - 2

    @cached_property
    def _run_starts(self) -> np.ndarray:
        """Positions in `index` where a run begins (padding separates rows)."""
        if not len(self.index):
            return np.zeros(0, dtype=np.int64)
        brk = (np.diff(self.index) != 1) | (np.diff(self.label) != 0)
        return np.flatnonzero(np.concatenate(([True], brk)))

    @cached_property
    def runs(self) -> Runs:
        starts = self._run_starts
        _, ph, pw = self.padded.shape
        first = self.index[starts]
        t, rest = np.divmod(first, ph * pw)
        y, x = np.divmod(rest, pw)
        length = np.diff(np.append(starts, len(self.index)))
        return Runs(t, y - 1, x - 1, x - 1 + length, self.label[starts].astype(np.int64))

    @cached_property
    def unpadded_index(self) -> np.ndarray:
        """Flat index of every labelled pixel into the unpadded ``(T, Y, X)`` array."""
        r = self.runs
        _, ph, pw = self.padded.shape
        _, h, w = self.shape
        # padded - unpadded = t (ph pw - h w) + (y + 1) pw + 1 - y w, constant along a run
        shift = r.frame * (ph * pw - h * w) + (r.row + 1) * pw + 1 - r.row * w
        return self.index - np.repeat(shift, r.length)

    def coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame, row and column (unpadded) of every foreground pixel."""
        r = self.runs
        t = np.repeat(r.frame, r.length)
        y = np.repeat(r.row, r.length)
        starts = np.repeat(self._run_starts, r.length)
        x = np.repeat(r.start, r.length) + (np.arange(len(self.index)) - starts)
        return t, y, x

    def values(self, image: np.ndarray) -> np.ndarray:
        """`image` (unpadded, shape of the labels) at every foreground pixel."""
        if image.shape != self.shape:
            raise ValueError(f"values {image.shape} do not match labels {self.shape}")
        return image.reshape(-1)[self.unpadded_index]  # type: ignore[no-any-return]


def runs_of(labels: np.ndarray) -> Runs:
    """Runs of a 2-D or 3-D label image (unpadded)."""
    stack = labels[None] if labels.ndim == 2 else labels
    return Foreground.from_labels(stack).runs
