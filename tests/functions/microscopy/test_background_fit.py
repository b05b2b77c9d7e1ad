"""The fitted background: block statistics against brute force, exactness on smooth
surfaces at any frame size and shape, no bias on Poisson data, dense fields, outliers,
time pooling, and the residual quality measure."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from functions.microscopy.background import estimate_background
from functions.microscopy.background_fit import (
    auto_block,
    auto_intervals,
    background_pixels,
    block_stats,
    bspline_basis,
    fit_background,
    fit_surface,
    fold,
)
from functions.microscopy.background_quality import (
    QualityLog,
    block_residuals,
    region_residuals,
)
from functions.microscopy.segmentation import _dilate
from functions.microscopy.synthetic_scenes import get_scene


def discs(shape: tuple[int, int, int], n: int, radius: float, seed: int) -> np.ndarray:
    """`n` random discs per frame (cells)."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros(shape, bool)
    for f in range(t):
        for cy, cx in rng.uniform(0, (h, w), (n, 2)):
            out[f] |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    return out


def cubic_surface(h: int, w: int, scale: int = 0) -> np.ndarray:
    """A smooth cubic in y and x over a field of side `scale` (the frame by default),
    cropped to ``h x w`` from its top-left corner."""
    side = max(scale, h, w)
    y = np.linspace(-1, 1, side)[:h, None]
    x = np.linspace(-1, 1, side)[None, :w]
    return 200 + 30 * x - 20 * y - 40 * x * x - 35 * y * y + 10 * x * y + 8 * x**3 - 5 * y**3


def test_basis_is_a_partition_of_unity_and_reproduces_cubics() -> None:
    x = np.linspace(-3, 103, 500)
    basis = bspline_basis(x, 100.0, 4)
    np.testing.assert_allclose(basis.sum(axis=1), 1.0, atol=1e-12)
    target = 1 + 0.3 * x - 0.01 * x**2 + 2e-4 * x**3
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    np.testing.assert_allclose(basis @ coef, target, atol=1e-9)


@pytest.mark.parametrize(("n", "size"), [(10, 3), (9, 3), (11, 4), (3, 8), (8, 8)])
def test_fold_adds_the_remainder_to_the_last_run(n: int, size: int) -> None:
    a = np.arange(2 * n * 5).reshape(2, n, 5)
    got = fold(a, 1, size, np.int64)
    runs = max(n // size, 1) if n > size else 1
    bounds = [*(i * size for i in range(runs)), n]
    expected = np.stack([a[:, b0:b1].sum(axis=1) for b0, b1 in itertools.pairwise(bounds)], axis=1)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize(("shape", "block"), [((2, 40, 37), 8), ((1, 64, 64), 16), ((1, 9, 5), 16)])
def test_block_stats_equal_brute_force(
    dtype: type, shape: tuple[int, int, int], block: int
) -> None:
    rng = np.random.default_rng(1)
    frames: np.ndarray = rng.poisson(300, shape).astype(dtype)
    keep = rng.random(shape) < 0.6
    stats = block_stats(frames, keep, block)
    t, h, w = shape
    ys = [*[0, *range(block, h - block + 1, block)][: max(h // block, 1)], h]
    xs = [*[0, *range(block, w - block + 1, block)][: max(w // block, 1)], w]
    for f in range(t):
        for i, (y0, y1) in enumerate(itertools.pairwise(ys)):
            for j, (x0, x1) in enumerate(itertools.pairwise(xs)):
                k = keep[f, y0:y1, x0:x1]
                yy, xx = np.nonzero(k)
                assert stats.pixels[f, i, j] == k.sum()
                assert stats.total[f, i, j] == pytest.approx(frames[f, y0:y1, x0:x1][k].sum())
                if k.any():
                    assert stats.y[f, i, j] == pytest.approx(y0 + yy.mean() + 0.5)
                    assert stats.x[f, i, j] == pytest.approx(x0 + xx.mean() + 0.5)


@pytest.mark.parametrize("shape", [(31, 38), (200, 300), (512, 512), (700, 640)])
@pytest.mark.parametrize("step", [1, 2])
def test_any_frame_size_reproduces_a_smooth_surface_around_cells(
    shape: tuple[int, int], step: int
) -> None:
    """No noise: the surface is recovered under cells too, at any size and shape (the
    tile-median spline needs >= 4 tiles per axis for a cubic, and PyAMA's crashes). A
    frame smaller than 256 px is a crop of a 256-px field: illumination does not bend
    over a few dozen pixels."""
    h, w = shape
    truth = cubic_surface(h, w, scale=256).astype(np.float32)
    cells = discs((1, h, w), max(h * w // 20000, 1), min(h, w) / 12, seed=2)
    keep = background_pixels(cells, dilation=5, step=step)
    surface, level = fit_background(truth[None], keep, step=step)
    err = np.abs(surface[0] - truth) / truth.mean()
    margin = min(h, w) // 8  # corners: the roughness penalty pulls the outermost knots
    assert err[margin:-margin, margin:-margin].max() < 0.005
    assert err.max() < 0.02
    assert level[0] == pytest.approx(truth.mean(), rel=1e-3)


def test_no_bias_on_poisson_data_where_medians_have_one() -> None:
    """The mean under a cell is what must be subtracted; the median of Poisson counts at
    250.4 is 250 (integer) and of any right-skewed background lies below the mean."""
    rng = np.random.default_rng(3)
    frames = rng.poisson(250.4, (4, 256, 256)).astype(np.uint16)
    cells = np.zeros(frames.shape, bool)
    keep = background_pixels(cells, step=1)
    surface, _ = fit_background(frames, keep, step=1)
    assert surface.mean() == pytest.approx(250.4, abs=0.05)
    medians = estimate_background(frames, cells, tile=128, sample_step=1)
    assert abs(medians.mean() - 250.4) > 0.3  # what the tile medians give instead


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_dense_field_under_vignetting(size: int) -> None:
    """Large cells cover a quarter to a third of the frame under the hard scene's
    vignetting bump: the surface under them is within 1 % of the truth on average at
    every frame size (the noise of the fit under holes this large, at 256 px), from
    four noisy frames with the same cells fitted together (as the workflow does for
    frames up to 512 x 512); PyAMA's tile medians miss by several times more."""
    scene = get_scene("hard")
    truth = scene.background(size, 0, 2)
    one = discs((1, size, size), int(0.4 * size * size / (np.pi * 40**2)), 40, seed=4)
    cells = np.repeat(one, 4, axis=0)
    rng = np.random.default_rng(5)
    frames = rng.poisson(np.broadcast_to(truth, cells.shape)).astype(np.uint16)
    step = 1 if size <= 512 else 2
    keep = background_pixels(cells, step=step)
    surface, _ = fit_background(frames, keep, step=step, window=4)
    rel = (surface[0] - truth)[one[0]] / truth[one[0]]
    assert abs(rel.mean()) < 0.01 and np.percentile(np.abs(rel), 95) < 0.03
    pyama = estimate_background(frames, cells)[0]
    assert abs(((pyama - truth)[one[0]] / truth[one[0]]).mean()) > 2 * abs(rel.mean())


def test_something_the_segmentation_missed_does_not_pull_the_surface() -> None:
    rng = np.random.default_rng(6)
    h = w = 256
    truth = np.full((h, w), 200.0, np.float32)
    frames = rng.poisson(truth, (1, h, w)).astype(np.float32)
    frames[0, 100:130, 60:90] += 3000  # a bright cell, not in the mask
    keep = background_pixels(np.zeros((1, h, w), bool), step=1)
    surface, _ = fit_background(frames, keep, step=1)
    far = np.ones((h, w), bool)
    far[80:150, 40:110] = False
    assert np.abs(surface[0][far] - 200).max() < 1.5
    assert np.abs(surface[0] - 200).max() < 8  # vs ~4000 counts in the blob's blocks


def test_frames_without_background_get_their_mean() -> None:
    frames = np.stack([np.full((40, 40), 7.0), np.full((40, 40), 9.0)]).astype(np.float32)
    keep = np.zeros((2, 40, 40), bool)
    keep[1] = True
    surface, level = fit_background(frames, keep, step=1)
    np.testing.assert_allclose(surface[0], 7.0)
    np.testing.assert_allclose(surface[1], 9.0, atol=1e-4)
    np.testing.assert_allclose(level, [7.0, 9.0], atol=1e-4)


def test_window_follows_a_linear_drift_and_averages_noise() -> None:
    h = w = 128
    base = cubic_surface(h, w, scale=512)
    drift = np.stack([base * (1 + 0.01 * t) + 0.2 * t for t in range(8)]).astype(np.float32)
    keep = background_pixels(discs(drift.shape, 3, 14, seed=7), step=1)
    pooled_exact, _ = fit_background(drift, keep, step=1, window=8)
    one_by_one, _ = fit_background(drift, keep, step=1, window=1)
    # linear in time: pooling changes nothing but the pull of the penalty at corners
    inner = (slice(None), slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(pooled_exact[inner], one_by_one[inner], rtol=1e-3)
    np.testing.assert_allclose(pooled_exact, one_by_one, rtol=2e-3)
    rng = np.random.default_rng(8)
    noisy = rng.poisson(drift).astype(np.float32)
    single, _ = fit_background(noisy, keep, step=1, window=1)
    pooled, _ = fit_background(noisy, keep, step=1, window=8)
    assert np.abs(pooled - drift).mean() < 0.6 * np.abs(single - drift).mean()


def test_automatic_sizes_follow_the_frame() -> None:
    sides = (31, 64, 256, 512, 700, 1024, 2048, 8192)
    assert [auto_block(n, n) for n in sides] == [4, 4, 16, 32, 32, 32, 64, 64]
    assert auto_block(512, 2048) == 32 and auto_block(2048, 300) == 19  # the shorter side
    assert [auto_intervals(n) for n in (31, 128, 256, 512, 2048)] == [1, 2, 4, 6, 6]


@pytest.mark.parametrize("step", [1, 2, 3])
def test_sampled_exclusion_covers_the_dilation(step: int) -> None:
    cells = discs((2, 65, 70), 3, 2.5, seed=11)
    cells[0, 30, 31] = True  # one pixel between the sampled rows and columns
    full = _dilate(cells, 21, np)
    keep = background_pixels(cells, dilation=21, step=step)
    assert not (keep & full[:, ::step, ::step]).any()  # never keeps a dilated pixel
    assert keep.mean() > 0.8 * (~full).mean()  # and not much more than it excludes


def test_validation() -> None:
    with pytest.raises(ValueError, match="sampled"):
        fit_background(np.zeros((1, 10, 10)), np.ones((1, 10, 10), bool), step=2)
    with pytest.raises(ValueError, match="block"):
        block_stats(np.zeros((1, 10, 10)), np.ones((1, 10, 10), bool), 200)


def test_quality_measure_sees_a_biased_surface() -> None:
    rng = np.random.default_rng(9)
    truth = get_scene("hard").background(256, 0, 2)
    frames = rng.poisson(truth, (2, 256, 256)).astype(np.uint16)
    keep = background_pixels(discs(frames.shape, 4, 40, seed=10), step=1)
    good = np.broadcast_to(truth, frames.shape)
    bad = good * np.float32(0.97)  # 3 % too low everywhere
    log = QualityLog(threshold=0.01)
    for surface in (good, bad):
        residual, count = region_residuals(frames, surface, keep, step=1)
        assert count.sum() == keep.sum()
        log.add(residual, surface.mean(axis=(1, 2)))
    assert max(log.worst[:2]) < 0.005  # noise only
    assert all(m == pytest.approx(0.03, abs=0.005) for m in log.median[2:])
    assert log.flagged() == [2, 3]
    summary = json.loads(json.dumps(log.summary()))
    assert summary["flagged_frames"] == [2, 3] and len(summary["residual_spread"]) == 4


@pytest.mark.parametrize(("size", "step"), [(256, 1), (512, 1), (1024, 2), (600, 1)])
def test_block_residuals_equal_the_pixel_residuals(size: int, step: int) -> None:
    """The workflow's quality measure from the fit's block sums: what a pass over the
    frames gives, within 0.05 % of the level (beyond second order in the surface's
    curvature across a block; at 600 px within 0.3 %: regions of whole blocks, shifted
    by up to a block from the pixel regions), for the fitted surface and for one 3 %
    too low."""
    rng = np.random.default_rng(13)
    truth = get_scene("hard").background(size, 0, 2)
    cells = discs((2, size, size), int(0.3 * size * size / (np.pi * 30**2)), 30, seed=14)
    frames = rng.poisson(np.broadcast_to(truth, cells.shape)).astype(np.uint16)
    keep = background_pixels(cells, step=step)
    fit = fit_surface(frames, keep, step=step)
    low = fit._replace(surface=fit.surface * np.float32(0.97), at_centroids=fit.at_centroids * 0.97)
    tolerance = (0.003 if size == 600 else 0.0005) * float(truth.mean())
    for f, bias in ((fit, 0.0), (low, 0.03)):
        pixels, count = region_residuals(frames, f.surface, keep, step=step)
        blocks, block_count = block_residuals(f, keep.shape[1:])
        if size != 600:
            np.testing.assert_array_equal(block_count, count)
        finite = np.isfinite(pixels) & np.isfinite(blocks)
        assert finite.sum() >= 0.75 * finite.size
        np.testing.assert_allclose(blocks[finite], pixels[finite], atol=tolerance)
        rel = np.nanmedian(blocks / f.level[:, None, None], axis=(1, 2))
        np.testing.assert_allclose(rel, bias, atol=0.005)
