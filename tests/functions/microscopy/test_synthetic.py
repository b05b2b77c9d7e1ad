"""Synthetic data: the maturation model and the ground truth's consistency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from functions.microscopy.readers import open_reader, read_metadata
from functions.microscopy.synthetic import BETA, KM, maturation, write_timelapse


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
