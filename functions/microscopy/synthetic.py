"""Synthetic time-lapse microscopy with known ground truth.

Each FOV has a phase-like channel (textured cells on a Poisson-noisy field) and a
fluorescence channel whose per-cell total intensity follows the maturation model
(:func:`maturation`), on a smooth uneven background that brightens slowly, with
Poisson noise and a slow stage drift. Some cells appear after the first frame and some
divide (the parent ends, two daughters with new ids start). Cells are ellipses large
enough for the log-std segmentation's 19-px opening and kept apart further than its
closing can bridge, so the truth is what a correct pipeline should recover. How dense
the cells are and how uneven the illumination is is a *scene*
(:mod:`functions.microscopy.synthetic_scenes`): ``classic`` (the original, easy) or
``hard`` (vignetting that scales with the frame, gradient, drift, dense fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from functions.microscopy.synthetic_scenes import SCENES, Scene, get_scene

#: Maturation constants (per hour) from the issue.
KM = 1.28
BETA = 5.22e-3


class TimelapsePaths(NamedTuple):
    image: Path
    truth: Path


def maturation(
    dt_h: Any, *, ktl: float, delta: float, km: float = KM, beta: float = BETA
) -> np.ndarray:
    """Maturation model: fluorescent protein after the onset of expression.

    ``y = ktl·[e^{-(β+km)dt}/(b+km) - e^{-β·dt}/b + km·e^{-δ·dt}/(b·(b+km))]·[dt>0]``
    with ``b = β - δ`` and ``dt`` in hours.

    Parameters
    ----------
    dt_h : array_like
        Time since onset, hours.
    ktl, delta, km, beta : float
        Translation rate, mRNA degradation, maturation and protein degradation rates.

    Returns
    -------
    y : ndarray of float64, shape of `dt_h`

    Examples
    --------
    >>> float(maturation(0.0, ktl=1.0, delta=0.05))
    0.0
    """
    b = beta - delta
    if abs(b) < 1e-12 or abs(b + km) < 1e-12:
        raise ValueError(f"delta={delta} makes the model singular (b = beta - delta = {b})")
    dt = np.asarray(dt_h, dtype=np.float64)
    d = np.maximum(dt, 0.0)
    y = ktl * (
        np.exp(-(beta + km) * d) / (b + km)
        - np.exp(-beta * d) / b
        + km * np.exp(-delta * d) / (b * (b + km))
    )
    return np.where(dt > 0, y, 0.0)


def _plan_cells(
    size: int, frames: int, rng: np.random.Generator, scene: Scene
) -> list[dict[str, Any]]:
    """Cells of one FOV: slot, shape, lifetime, model parameters, parent."""
    centres, pitch = scene.layout(size)
    n = len(centres)
    (a_lo, a_hi), (b_lo, b_hi) = scene.axes_ranges(pitch)
    cells: list[dict[str, Any]] = []
    skip: set[tuple[int, int]] = set()
    for i, cy in enumerate(centres):
        for j, cx in enumerate(centres):
            if (i, j) in skip:
                continue
            kind = rng.choice(["empty", "late", "divide", "normal"], p=list(scene.kinds))
            if kind == "divide" and (j + 1 >= n or frames < 8):
                kind = "normal"
            base: dict[str, Any] = {
                "a": float(rng.uniform(a_lo, a_hi)),
                "b": float(rng.uniform(b_lo, b_hi)),
                "theta": float(rng.uniform(0, np.pi)),
                "ktl": float(rng.uniform(1.2e5, 2e5)),
                "delta": float(rng.uniform(0.03, 0.08)),
                "t0_h": float(rng.uniform(0.0, 2.0)),
                "scale": 1.0,
                "phase": rng.uniform(0, 2 * np.pi, 2),
                "period": rng.uniform(20, 40),
                "parent": None,
            }
            if kind == "empty":
                continue
            if kind in ("normal", "late"):
                start = int(rng.integers(frames // 6, frames // 2 + 1)) if kind == "late" else 0
                cells.append({**base, "y": cy, "x": cx, "start": start, "end": frames})
                continue
            skip.add((i, j + 1))
            split = int(rng.integers(frames // 4, 3 * frames // 4 + 1))
            parent = {**base, "y": cy, "x": cx + pitch / 2, "start": 0, "end": split}
            cells.append(parent)
            for dx in (0.0, pitch):
                cells.append(
                    {
                        **base,
                        "a": base["a"] * 0.9,
                        "b": base["b"] * 0.9,
                        "theta": float(rng.uniform(0, np.pi)),
                        "y": cy,
                        "x": cx + dx,
                        "start": split,
                        "end": frames,
                        "scale": 0.5,
                        "phase": rng.uniform(0, 2 * np.pi, 2),
                        "parent": len(cells) - 1 if dx == 0.0 else len(cells) - 2,
                    }
                )
    for k, c in enumerate(cells):
        c["id"] = k + 1
        if c["parent"] is not None:
            c["parent"] = cells[c["parent"]]["id"] if c["parent"] < k else None
    return cells


def _position(c: dict[str, Any], t: int, frames: int, scene: Scene) -> tuple[float, float]:
    drift_y, drift_x = scene.stage(t, frames)
    wob = scene.wobble * np.sin(2 * np.pi * t / c["period"] + c["phase"])
    return c["y"] + drift_y + wob[0], c["x"] + drift_x + wob[1]


def _ellipse(
    cy: float, cx: float, a: float, b: float, theta: float, size: int
) -> tuple[tuple[slice, slice], np.ndarray]:
    r = int(np.ceil(max(a, b))) + 1
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, size)
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, size)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (slice(y0, y1), slice(x0, x1)), (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _background(size: int, t: int, frames: int) -> np.ndarray:
    """The classic scene's background (kept for callers of the original generator)."""
    return SCENES["classic"].background(size, t, frames)


def render_frame(
    cells: list[dict[str, Any]],
    t: int,
    *,
    size: int,
    frames: int,
    interval_min: float,
    rng: np.random.Generator,
    truth: dict[int, Any],
    scene: Scene | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase and fluorescence images (uint16) of frame `t`; appends the truth of every
    visible cell to ``truth[id]``."""
    scene = scene or SCENES["classic"]
    phase = np.full((size, size), 1000.0, dtype=np.float32)
    fluo = scene.background(size, t, frames)
    hours = t * interval_min / 60.0
    for c in cells:
        if not c["start"] <= t < c["end"]:
            continue
        cy, cx = _position(c, t, frames, scene)
        win, outer = _ellipse(cy, cx, c["a"], c["b"], c["theta"], size)
        texture = rng.normal(-150.0, 250.0, outer.shape).astype(np.float32)
        phase[win] += np.where(outer, texture, 0)
        inset = scene.body_inset
        bwin, body = _ellipse(cy, cx, c["a"] - inset, c["b"] - inset, c["theta"], size)
        total = c["scale"] * float(maturation(hours - c["t0_h"], ktl=c["ktl"], delta=c["delta"]))
        fluo[bwin] += np.where(body, np.float32(total / body.sum()), 0)
        rec = truth.setdefault(
            c["id"], {"frames": [], "positions": [], "areas": [], "intensity": []}
        )
        rec["frames"].append(t)
        rec["positions"].append([round(cx, 3), round(cy, 3)])
        rec["areas"].append(int(outer.sum()))
        rec["intensity"].append(total)
    phase *= scene.phase_illumination(size)
    phase_img = rng.poisson(np.maximum(phase, 0)).clip(0, 65535).astype(np.uint16)
    fluo_img = rng.poisson(fluo).clip(0, 65535).astype(np.uint16)
    return phase_img, fluo_img


def write_timelapse(
    out_dir: str | Path,
    *,
    fovs: int = 4,
    frames: int = 60,
    size: int = 512,
    seed: int = 0,
    interval_min: float = 10.0,
    scene: str = "classic",
) -> TimelapsePaths:
    """Write a multi-FOV OME-TIFF time-lapse and its ground truth JSON.

    Parameters
    ----------
    out_dir : path
        Created if missing; receives ``timelapse.ome.tif`` and ``timelapse.truth.json``.
    fovs, frames, size : int
        FOVs (one OME ``Image`` each), frames per FOV, frame side in pixels (≥ 64).
    seed : int
        Everything is reproducible from it.
    interval_min : float
        Minutes between frames (written as ``TimeIncrement`` in minutes).
    scene : {"classic", "hard"}
        Cell layout and illumination (see :mod:`functions.microscopy.synthetic_scenes`).

    Returns
    -------
    paths : TimelapsePaths
        ``(image, truth)``.
    """
    import tifffile

    layout = get_scene(scene)
    if fovs < 1 or frames < 1 or size < 64:
        raise ValueError(f"need fovs >= 1, frames >= 1, size >= 64; got {fovs}, {frames}, {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = TimelapsePaths(out / "timelapse.ome.tif", out / "timelapse.truth.json")
    truth: dict[str, Any] = {
        "size": size,
        "frames": frames,
        "interval_min": interval_min,
        "scene": layout.name,
        "channels": ["phase", "fluorescence"],
        "model": {"name": "maturation", "km": KM, "beta": BETA},
        "fovs": [],
    }
    with tifffile.TiffWriter(
        paths.image, bigtiff=size * size * frames * fovs * 4 > 2**31, ome=True
    ) as tw:
        for fov in range(fovs):
            rng = np.random.default_rng([seed, fov])
            cells = _plan_cells(size, frames, rng, layout)
            per_cell: dict[int, Any] = {}

            def pages(
                cells: list[dict[str, Any]] = cells,
                per_cell: dict[int, Any] = per_cell,
                rng: np.random.Generator = rng,
            ) -> Any:
                for t in range(frames):
                    yield from render_frame(
                        cells,
                        t,
                        size=size,
                        frames=frames,
                        interval_min=interval_min,
                        rng=rng,
                        truth=per_cell,
                        scene=layout,
                    )

            tw.write(
                pages(),
                shape=(frames, 2, size, size),
                dtype=np.uint16,
                metadata={
                    "axes": "TCYX",
                    "Name": f"FOV {fov}",
                    "PhysicalSizeX": 0.65,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeY": 0.65,
                    "PhysicalSizeYUnit": "µm",
                    "TimeIncrement": interval_min,
                    "TimeIncrementUnit": "min",
                    "Channel": {"Name": ["Phase", "GFP"], "EmissionWavelength": [None, 510.0]},
                },
            )
            truth["fovs"].append(
                {
                    "fov": fov,
                    "cells": [_cell_truth(c, per_cell) for c in cells if c["id"] in per_cell],
                }
            )
    paths.truth.write_text(json.dumps(truth))
    return paths


def _cell_truth(c: dict[str, Any], rec: dict[int, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "parent": c["parent"],
        **rec[c["id"]],
        "params": {
            "ktl": c["ktl"] * c["scale"],
            "delta": c["delta"],
            "t0_h": c["t0_h"],
            "km": KM,
            "beta": BETA,
        },
    }
