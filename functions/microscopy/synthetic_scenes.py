"""How hard a synthetic FOV is: cell layout and illumination of the two scenes.

``classic`` is the generator's original scene: cells on a square grid well inside the
frame (about 20 % cover), a gently uneven fluorescence background defined on a 1024-px
scale whatever the frame size, so a small frame sees only its nearly flat centre.

``hard`` is what a microscope gives: the background is a vignetting bump that scales
with the field of view (cos⁴-like falloff, about 1.6x brighter at the centre than at
the middle of an edge and 2.2x than at a corner) on a camera offset, tilted by a linear
gradient, brightening and drifting slowly over the experiment; cells are larger and
packed densely (more than 30 % of the frame) on a grid whose pitch stretches to fill
the frame, so the same density holds at every frame size; the phase channel is
vignetted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SceneName = Literal["classic", "hard"]


@dataclass(frozen=True)
class Scene:
    """Layout and illumination parameters of one kind of synthetic FOV."""

    name: SceneName
    spacing: int  # (smallest) pitch of the square grid of cell slots, px
    semi_axes: tuple[tuple[float, float], tuple[float, float]]  # (a range, b range)
    relative_axes: bool  # semi-axes are fractions of the pitch (else px)
    body_inset: float  # fluorescent body = cell ellipse shrunk by this many px
    wobble: float  # amplitude of each cell's own periodic motion, px
    drift: tuple[float, float] | None  # stage drift (y, x) over the experiment, px
    kinds: tuple[float, float, float, float]  # p(empty, late, divide, normal) per slot
    fill_frame: bool  # the grid's pitch stretches so slots fill the frame

    def layout(self, size: int) -> tuple[np.ndarray, float]:
        """Slot centres along one axis of a frame of side `size`, and the pitch."""
        if self.fill_frame:
            n = max(size // self.spacing, 1)
            pitch = size / n
            return (np.arange(n) + 0.5) * pitch, pitch
        n = max((size - 40) // self.spacing, 1)
        offset = (size - n * self.spacing) / 2 + self.spacing / 2
        return offset + self.spacing * np.arange(n, dtype=np.float64), float(self.spacing)

    def axes_ranges(self, pitch: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """Ranges of the semi-axes (px) for slots of this pitch."""
        if not self.relative_axes:
            return self.semi_axes
        (a0, a1), (b0, b1) = self.semi_axes
        return (a0 * pitch, a1 * pitch), (b0 * pitch, b1 * pitch)

    def stage(self, t: int, frames: int) -> tuple[float, float]:
        """Stage offset (y, x) of frame `t`: 0.1 and 0.15 px per frame (classic), or the
        scene's total drift spread over the experiment and centred on the frame."""
        if self.drift is None:
            return 0.1 * t, 0.15 * t
        progress = t / max(frames - 1, 1) - 0.5
        return self.drift[0] * progress, self.drift[1] * progress

    def background(self, size: int, t: int, frames: int) -> np.ndarray:
        """Expected fluorescence background (counts) of frame `t`, float32 ``(size, size)``."""
        progress = t / max(frames - 1, 1)
        if self.name == "classic":
            return _classic_background(size, progress)
        return _hard_background(size, progress)

    def phase_illumination(self, size: int) -> np.ndarray | float:
        """Relative phase-contrast illumination (1 = the mean level)."""
        if self.name == "classic":
            return 1.0
        v = _vignette(size, 0.0, 1.2)
        return (v / v.mean()).astype(np.float32)


def _classic_background(size: int, progress: float) -> np.ndarray:
    """A tilted, vignetted plane on a 1024-px scale (the same at every frame size) that
    brightens by 10 % over the experiment."""
    g = (np.arange(size, dtype=np.float64) - (size - 1) / 2) / 1024.0
    v, u = g[:, None], g[None, :]
    surface = 1.0 + 0.2 * u - 0.15 * v - 0.25 * (u * u + v * v) + 0.05 * u * v
    return (200.0 * (1.0 + 0.1 * progress) * surface).astype(np.float32)


#: hard background: camera offset + level x vignette x gradient (counts)
HARD_OFFSET = 40.0
HARD_LEVEL = 260.0
HARD_PEAK_OVER_EDGE = 1.75  # of the vignette factor, centre vs middle of an edge
HARD_GRADIENT = 0.25  # fractional change of the level across the frame
HARD_BRIGHTENING = 0.15  # over the experiment
HARD_CENTRE_DRIFT = 0.03  # of the frame side, over the experiment


def _vignette(size: int, progress: float, peak_over_edge: float) -> np.ndarray:
    """cos⁴-law falloff ``1 / (1 + (r/R)²)²`` around an off-centre optical axis, with R
    a fixed fraction of the frame side so the shape scales with the field of view."""
    rho_edge2 = np.sqrt(peak_over_edge) - 1.0  # (r/R)² at the middle of an edge
    radius = 0.5 * size / np.sqrt(rho_edge2)
    cy = size * (0.5 + 0.04 - HARD_CENTRE_DRIFT * progress)
    cx = size * (0.5 - 0.05 + HARD_CENTRE_DRIFT * progress)
    pix = np.arange(size, dtype=np.float64)
    ry = ((pix - cy) / radius) ** 2
    rx = ((pix - cx) / radius) ** 2
    return 1.0 / (1.0 + ry[:, None] + rx[None, :]) ** 2  # type: ignore[no-any-return]


def _hard_background(size: int, progress: float) -> np.ndarray:
    g = (np.arange(size, dtype=np.float64) - (size - 1) / 2) / size  # -0.5 .. 0.5
    angle = 0.6 + 0.4 * progress  # the tilt turns slowly too
    tilt = 1.0 + HARD_GRADIENT * (np.cos(angle) * g[None, :] + np.sin(angle) * g[:, None])
    level = HARD_LEVEL * (1.0 + HARD_BRIGHTENING * progress)
    surface = HARD_OFFSET + level * _vignette(size, progress, HARD_PEAK_OVER_EDGE) * tilt
    return surface.astype(np.float32)


SCENES: dict[str, Scene] = {
    "classic": Scene(
        name="classic",
        spacing=84,  # 2 x largest semi-axis (27) + a 30-px gap
        semi_axes=((23.0, 27.0), (19.0, 23.0)),
        relative_axes=False,
        body_inset=5.0,
        wobble=3.0,
        drift=None,
        kinds=(0.08, 0.12, 0.1, 0.7),
        fill_frame=False,
    ),
    "hard": Scene(
        name="hard",
        # the pitch stretches to fill the frame (>= 105 px), cells scale with it: gaps of
        # >= 0.22 x 105 = 23 px (>= 19 with both neighbours' wobble) that the
        # segmentation's 19-px closing never bridges; about 38 % of each slot is cell
        spacing=105,
        semi_axes=((0.355, 0.39), (0.31, 0.345)),
        relative_axes=True,
        body_inset=6.0,
        wobble=2.0,
        drift=(4.0, 6.0),
        kinds=(0.0, 0.1, 0.0, 0.9),  # no divisions: IoU tracking (by design) links a
        # daughter that overlaps its parent to the parent
        fill_frame=True,
    ),
}


def get_scene(name: str) -> Scene:
    """The scene called `name`; ValueError naming the known ones otherwise."""
    try:
        return SCENES[name]
    except KeyError:
        raise ValueError(f"unknown scene {name!r}; known: {sorted(SCENES)}") from None
