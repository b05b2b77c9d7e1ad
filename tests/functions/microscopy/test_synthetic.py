"""Synthetic data: the maturation model and the ground truth's consistency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from functions.microscopy.readers import open_reader, read_metadata
from functions.microscopy.synthetic import BETA, KM, maturation, write_timelapse
from functions.microscopy.synthetic_scenes import get_scene


@pytest.mark.parametrize("delta", [0.03, 0.1, 1e-4])
def test_maturation_formula(delta: float) -> None:
    dt = np.array([-1.0, 0.0, 0.5, 3.0, 12.0])
    b = BETA - delta
    ref = 2.0 * (
        np.exp(-(BETA + KM) * dt) / (b + KM)
        - np.exp(-BETA * dt) / b
        + KM * np.exp(-delta * dt) / (b * (b + KM))
    )
    ref[dt <= 0] = 0
    np.testing.assert_allclose(maturation(dt, ktl=2.0, delta=delta), ref, rtol=1e-12)
    assert maturation(1e-9, ktl=1.0, delta=delta) == pytest.approx(0, abs=1e-6)


def test_maturation_singular() -> None:
    with pytest.raises(ValueError, match="singular"):
        maturation(1.0, ktl=1.0, delta=BETA)


def test_timelapse_files(tmp_path: Path) -> None:
    paths = write_timelapse(tmp_path, fovs=2, frames=24, size=256, seed=2)
    m = read_metadata(paths.image)
    assert (m.file_type, m.n_fovs, m.n_frames, m.n_channels, m.height) == (
        "ome-tiff",
        2,
        24,
        2,
        256,
    )
    assert m.time_units == "min" and m.timepoints[1] == pytest.approx(10.0)
    truth = json.loads(paths.truth.read_text())
    cells = truth["fovs"][0]["cells"]
    assert cells and all(len(c["frames"]) == len(c["intensity"]) == len(c["areas"]) for c in cells)
    c = cells[0]
    hours = np.asarray(c["frames"]) * 10 / 60 - c["params"]["t0_h"]
    np.testing.assert_allclose(
        c["intensity"],
        maturation(hours, ktl=c["params"]["ktl"], delta=c["params"]["delta"]),
        rtol=1e-9,
    )
    with open_reader(paths.image) as r:
        a, b = r.read(0, 0, 0, 2), r.read(0, 0, 0, 2)
    np.testing.assert_array_equal(a, b)
    again = write_timelapse(tmp_path / "again", fovs=1, frames=24, size=256, seed=2)
    with open_reader(again.image) as r:
        np.testing.assert_array_equal(r.read(0, 0, 0, 2), a)


def test_rejects_tiny_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        write_timelapse(tmp_path, size=32)


@pytest.mark.parametrize("size", [256, 512, 1024, 2048])
def test_hard_background_scales_with_the_frame(size: int) -> None:
    """Vignetting 1.5-2x from centre to the middle of an edge at every frame size, the
    same shape at every size (a 256² frame is not a flat crop), a linear tilt, and a
    slow drift over the experiment."""
    scene = get_scene("hard")
    first, last = scene.background(size, 0, 60), scene.background(size, 59, 60)
    edges = [first[0, size // 2], first[-1, size // 2], first[size // 2, 0], first[size // 2, -1]]
    ratio = float(first.max()) / float(np.mean(edges))
    assert 1.5 <= ratio <= 2.0, ratio
    small = scene.background(256, 0, 60)
    step = size // 256
    np.testing.assert_allclose(first[step // 2 :: step, step // 2 :: step], small, rtol=0.02)
    # tilted and off-centre: far from symmetric under a half turn
    assert np.abs(first / first[::-1, ::-1] - 1).max() > 0.1
    assert 1.1 < last.mean() / first.mean() < 1.2  # brightens by ~15 %
    shift = np.unravel_index(np.argmax(last), last.shape)
    peak = np.unravel_index(np.argmax(first), first.shape)
    assert peak != shift  # the optical axis drifts


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_hard_scene_is_dense_and_noisy(tmp_path: Path, size: int) -> None:
    paths = write_timelapse(tmp_path, fovs=1, frames=6, size=size, seed=4, scene="hard")
    truth = json.loads(paths.truth.read_text())
    assert truth["scene"] == "hard"
    cells = truth["fovs"][0]["cells"]
    for f in range(6):
        covered = sum(c["areas"][c["frames"].index(f)] for c in cells if f in c["frames"])
        assert covered / size**2 >= 0.30
    scene = get_scene("hard")
    with open_reader(paths.image) as r:
        fluo = r.read(0, 1, 5, 6)[0].astype(np.float64)
    expected = scene.background(size, 5, 6).astype(np.float64)
    corner = (slice(0, 6), slice(0, 6))  # never under a cell: background only
    resid = fluo[corner] - expected[corner]
    assert abs(resid.mean()) < 4 * np.sqrt(expected[corner].mean() / resid.size)
    assert resid.var() == pytest.approx(expected[corner].mean(), rel=0.5)  # Poisson


def test_unknown_scene(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scene"):
        write_timelapse(tmp_path, scene="easy")
