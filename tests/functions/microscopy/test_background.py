"""Background surface against oracles written from PyAMA's published method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RectBivariateSpline

from functions.microscopy.background import (
    estimate_background,
    interpolation_matrix,
    subtract_background,
    tile_centres,
    tile_medians,
    tile_starts,
)


def oracle_medians(frame: np.ndarray, excluded: np.ndarray, tile: int = 256) -> np.ndarray:
    ys, xs = tile_starts(frame.shape[0], tile), tile_starts(frame.shape[1], tile)
    th, tw = min(tile, frame.shape[0]), min(tile, frame.shape[1])
    out = np.full((len(ys), len(xs)), np.nan)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            keep = ~excluded[y : y + th, x : x + tw]
            if keep.any():
                out[i, j] = np.median(frame[y : y + th, x : x + tw][keep])
    return out


@pytest.mark.parametrize("shape", [(2, 31, 38), (2, 300, 520), (1, 640, 700)])
@pytest.mark.parametrize("masked", [0.0, 0.3, 0.97])
def test_tile_medians_exact(shape: tuple[int, int, int], masked: float) -> None:
    rng = np.random.default_rng(0)
    frames = rng.poisson(100, shape).astype(np.uint16)
    excluded = rng.random(shape) < masked
    got = tile_medians(frames, excluded, step=1)
    for f in range(shape[0]):
        np.testing.assert_array_equal(got[f], oracle_medians(frames[f], excluded[f]))


def test_tile_layout_overlaps_by_half_and_covers() -> None:
    assert tile_starts(512, 256).tolist() == [0, 128, 256]
    assert tile_starts(600, 256).tolist() == [0, 128, 256, 344]
    assert tile_starts(31, 256).tolist() == [0]
    assert tile_centres(512, 256).tolist() == [127.5, 255.5, 383.5]


def test_surface_equals_cubic_spline_through_centres() -> None:
    """Inside the centres' hull the surface is scipy's interpolating bicubic spline."""
    rng = np.random.default_rng(1)
    h, w = 640, 900
    yc, xc = tile_centres(h, 256), tile_centres(w, 256)
    m = rng.random((len(yc), len(xc)))
    surface = interpolation_matrix(h, 256) @ m @ interpolation_matrix(w, 256).T
    ref = RectBivariateSpline(yc, xc, m, kx=3, ky=3, s=0)
    yy = np.arange(int(np.ceil(yc[0])), int(yc[-1]) + 1)
    xx = np.arange(int(np.ceil(xc[0])), int(xc[-1]) + 1)
    np.testing.assert_allclose(surface[np.ix_(yy, xx)], ref(yy, xx), atol=1e-12)


@pytest.mark.parametrize("size", [(31, 38), (200, 300), (512, 512), (700, 640)])
def test_any_frame_size_reproduces_a_plane(size: tuple[int, int]) -> None:
    """Degree falls back with few centres (PyAMA's cubic spline fails at ≤ 512 px);
    a plane is reproduced exactly whenever there are ≥ 2 centres per axis."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    plane = (100 + 0.05 * yy - 0.03 * xx).astype(np.float32)
    if h <= 256 or w <= 256:
        plane[:] = 100  # one tile per axis: a constant surface
    got = estimate_background(plane[None], np.zeros((1, h, w), bool), sample_step=1)
    np.testing.assert_allclose(got[0], plane, atol=0.02)


def test_cells_are_excluded_from_the_background() -> None:
    rng = np.random.default_rng(2)
    frames = rng.poisson(100, (2, 512, 512)).astype(np.float32)
    cells = np.zeros(frames.shape, bool)
    cells[:, 100:160, 100:160] = True
    frames[cells] += 5000
    bg = estimate_background(frames, cells)
    assert np.abs(bg - 100).max() < 2.0  # Poisson noise of the tile medians only


@pytest.mark.parametrize("step", [2, 4])
def test_subsampled_medians_close_to_exact(step: int) -> None:
    rng = np.random.default_rng(3)
    frames = rng.poisson(200, (2, 512, 512)).astype(np.uint16)
    excluded = rng.random(frames.shape) < 0.2
    exact = tile_medians(frames, excluded, step=1)
    approx = tile_medians(frames, excluded, step=step)
    assert np.abs(exact - approx).max() <= 1.0  # integer data: at most one count


def test_fully_covered_tiles_borrow_from_others() -> None:
    frames = np.full((1, 512, 512), 50.0)
    cells = np.zeros(frames.shape, bool)
    cells[0, :300, :300] = True
    np.testing.assert_allclose(estimate_background(frames, cells, dilation=0), 50.0)


def test_weight_and_validation() -> None:
    f = np.full((1, 4, 4), 10, np.uint16)
    b = np.full((1, 4, 4), 4, np.float32)
    np.testing.assert_array_equal(subtract_background(f, b, weight=0.5), 8.0)
    with pytest.raises(ValueError, match="weight"):
        subtract_background(f, b, weight=1.5)
    with pytest.raises(ValueError, match="shape"):
        estimate_background(f, np.zeros((1, 4, 5), bool))
