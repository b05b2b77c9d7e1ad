"""The fast equal-bin histogram is numpy's, bin for bin, including values on edges."""

from __future__ import annotations

import numpy as np
import pytest

from functions.microscopy.histogram import uniform_histogram


def on_edges(dtype: type) -> np.ndarray:
    """Values exactly on numpy's float edges, their neighbours, and the maximum."""
    edges = np.histogram(np.array([0.0, 10.0], dtype), 200)[1]
    up = np.nextafter(edges, np.inf).astype(dtype)
    down = np.nextafter(edges, -np.inf).astype(dtype)
    return np.concatenate([edges, up, down]).clip(0, 10).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng, d: rng.normal(3.5, 0.4, (300, 310)).astype(d),
        lambda rng, d: np.concatenate([rng.normal(3, 1, 5000), np.zeros(3000)]).astype(d),
        lambda rng, d: np.concatenate([on_edges(d), rng.uniform(0, 10, 999).astype(d)]),
        lambda rng, d: np.full(17, 2.5, d),
        lambda rng, d: rng.integers(0, 7, 4000).astype(d),
    ],
)
@pytest.mark.parametrize("bins", [2, 7, 200, 255, 256, 300])
def test_equals_numpy(dtype: type, make: object, bins: int) -> None:
    x = make(np.random.default_rng(bins), dtype)  # type: ignore[operator]
    counts, edges = uniform_histogram(x, bins)
    ref_counts, ref_edges = np.histogram(x, bins)
    np.testing.assert_array_equal(edges, ref_edges)
    np.testing.assert_array_equal(counts, ref_counts)


def test_non_finite_is_refused_like_numpy() -> None:
    with pytest.raises(ValueError, match="finite"):
        uniform_histogram(np.array([1.0, np.nan], np.float32), 4)
