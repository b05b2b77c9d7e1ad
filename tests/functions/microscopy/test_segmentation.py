"""Log-std segmentation against oracles written from PyAMA's published method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from functions.microscopy.segmentation import (
    clean_mask,
    fill_holes,
    local_logstd,
    logstd_threshold,
    segment_logstd,
)


def oracle_logstd(frame: np.ndarray, size: int = 3) -> np.ndarray:
    """½·ln(E[x²] - E[x]²) over a size² window in float64; 0 where the variance is ≤ 0."""
    x = frame.astype(np.float64)
    var = ndimage.uniform_filter(x * x, size) - ndimage.uniform_filter(x, size) ** 2
    out = np.zeros_like(var)
    out[var > 0] = 0.5 * np.log(var[var > 0])
    return out


def oracle_threshold(logstd: np.ndarray, bins: int = 200) -> float:
    """Mode (centre of the fullest of `bins` bins) + 3 x std of the values ≤ mode."""
    counts, edges = np.histogram(logstd, bins=bins)
    i = np.argmax(counts)
    mode = (edges[i] + edges[i + 1]) / 2
    return float(mode + 3 * logstd[logstd <= mode].std())


def textured(shape: tuple[int, int], seed: int, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.poisson(1000, shape).astype(np.float64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx in rng.uniform(0, np.array(shape), (4, 2)):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < 14**2
        img[inside] += rng.normal(0, 300, inside.sum())
    return np.clip(img, 0, None).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(31, 38), (96, 128)])
def test_logstd_matches_oracle(dtype: type, shape: tuple[int, int]) -> None:
    frame = textured(shape, 1, dtype)
    got = local_logstd(frame[None])[0]
    # float32 with per-frame centring: within 1e-3 in log units of the float64 oracle
    np.testing.assert_allclose(got, oracle_logstd(frame), atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_matches_oracle(seed: int) -> None:
    frame = textured((128, 160), seed, np.uint16)
    ls = local_logstd(frame[None])[0]
    assert logstd_threshold(ls) == pytest.approx(oracle_threshold(ls), rel=1e-6)
    # and agrees with the oracle run end to end in float64 to within a bin width
    ref = oracle_logstd(frame)
    assert logstd_threshold(ls) == pytest.approx(
        oracle_threshold(ref), abs=(ref.max() - ref.min()) / 200
    )


@pytest.mark.parametrize("shape", [(3, 40, 50), (2, 120, 90)])
@pytest.mark.parametrize("seed", [0, 1])
def test_clean_mask_equals_scipy_morphology(shape: tuple[int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.uniform_filter(rng.random(shape), size=(1, 7, 7)) > 0.52
    square = np.ones((7, 7), bool)
    expected = np.stack(
        [
            ndimage.binary_closing(
                ndimage.binary_opening(ndimage.binary_fill_holes(m), square, iterations=3),
                square,
                iterations=3,
            )
            for m in mask
        ]
    )
    np.testing.assert_array_equal(clean_mask(mask), expected)


def test_fill_holes_per_frame() -> None:
    mask = np.zeros((2, 9, 9), bool)
    mask[:, 2:7, 2:7] = True
    mask[:, 4, 4] = False
    mask[1, 2, 4] = False  # an open notch is not a hole
    expected = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    np.testing.assert_array_equal(fill_holes(mask), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_holes_equals_scipy_on_noisy_masks(seed: int) -> None:
    """Many holes, nested and diagonal-only gaps, regions open at every border."""
    rng = np.random.default_rng(seed)
    mask = ndimage.uniform_filter(rng.random((4, 47, 61)), size=(1, 3, 3)) > 0.5
    mask[1] = True  # no background at all
    mask[2] = False  # nothing but background
    mask[3, 10:30, 10:30] = True
    mask[3, 12:28, 12:28] = False  # a ring's hole ...
    mask[3, 15:25, 15:25] = True  # ... around an island with a hole of its own
    mask[3, 19, 19] = False
    expected = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    np.testing.assert_array_equal(fill_holes(mask), expected)


def test_segments_cells_not_background() -> None:
    frame = textured((120, 140), 3, np.uint16)
    mask = segment_logstd(frame)[0]
    assert mask.dtype == bool
    assert 0.05 < mask.mean() < 0.5


@pytest.mark.parametrize("shape", [(5,), (2, 2, 3, 3)])
def test_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        local_logstd(np.zeros(shape))


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="structure_size"):
        clean_mask(np.zeros((1, 8, 8), bool), structure_size=0)
    with pytest.raises(ValueError, match="bins"):
        logstd_threshold(np.zeros((4, 4)), bins=1)


@pytest.mark.parametrize(("structure_size", "iterations"), [(3, 3), (5, 1), (9, 2)])
def test_clean_mask_odd_squares(structure_size: int, iterations: int) -> None:
    """The opening's and closing's dilations merged into one (odd squares only)."""
    rng = np.random.default_rng(4)
    mask = ndimage.uniform_filter(rng.random((2, 60, 70)), size=(1, 5, 5)) > 0.5
    square = np.ones((structure_size, structure_size), bool)
    expected = np.stack(
        [
            ndimage.binary_closing(
                ndimage.binary_opening(ndimage.binary_fill_holes(m), square, iterations=iterations),
                square,
                iterations=iterations,
            )
            for m in mask
        ]
    )
    got = clean_mask(mask, structure_size=structure_size, iterations=iterations)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [1, 2, 4, 5, 9, 12])
def test_logstd_any_window_matches_oracle(size: int) -> None:
    frame = textured((40, 52), 5, np.uint16)
    got = local_logstd(frame[None], size=size)[0]
    np.testing.assert_allclose(got, oracle_logstd(frame, size), atol=1e-3)


@pytest.mark.parametrize("size", [3, 5])
def test_segment_thresholds_as_the_log_std_does(size: int) -> None:
    """The host thresholds ln(k²·var), not the log std: the same raw mask either way."""
    frames = np.stack([textured((70, 90), seed, np.uint16) for seed in (7, 8, 9)])
    logstd = local_logstd(frames, size=size)
    thresholds = np.array([logstd_threshold(f) for f in logstd], np.float32)
    raw = logstd > thresholds[:, None, None]
    expected = clean_mask(raw, structure_size=3, iterations=1)
    got = segment_logstd(frames, size=size, structure_size=3, iterations=1)
    assert raw.any() and not raw.all()
    np.testing.assert_array_equal(got, expected)
