"""The batched SPD solve against LAPACK on the kind of systems the solver builds."""

from __future__ import annotations

import numpy as np
import pytest

from functions.fitting.linalg import inverse_spd, solve_spd


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_matches_lapack_on_badly_scaled_normal_equations(k: int) -> None:
    rng = np.random.default_rng(k)
    # Jacobian columns whose scales differ by nine orders of magnitude, as t0 and ktl do
    J = rng.normal(size=(300, k, 50)) * np.logspace(-3, 6, k)[None, :, None]
    A = J @ J.transpose(0, 2, 1) + 1e-3 * np.eye(k)
    b = rng.normal(size=(300, k)) * np.logspace(-3, 6, k)
    want = np.linalg.solve(A, b[..., None])[..., 0]
    got = solve_spd(np, A, b)
    assert got.shape == (300, k)
    scale = np.abs(want).max(axis=1, keepdims=True)
    assert np.abs(got - want).max() / scale.min() < 1e-9
    residual = np.einsum("nij,nj->ni", A, got) - b
    assert (np.abs(residual) <= 1e-9 * np.abs(b).max(axis=1, keepdims=True)).all()


def test_reads_only_the_lower_triangle_and_keeps_rows_apart() -> None:
    A = np.array([[[4.0, 999.0], [2.0, 3.0]], [[1.0, -5.0], [0.0, 1.0]]])
    b = np.array([[2.0, 1.0], [3.0, -2.0]])
    sym = np.tril(A) + np.tril(A, -1).transpose(0, 2, 1)
    np.testing.assert_allclose(solve_spd(np, A, b), np.linalg.solve(sym, b[..., None])[..., 0])


def test_non_finite_rows_stay_in_their_row() -> None:
    A = np.tile(np.eye(3) * 2.0, (3, 1, 1))
    A[1, 0, 0] = np.nan
    b = np.ones((3, 3))
    x = solve_spd(np, A, b)
    assert not np.isfinite(x[1]).all()
    np.testing.assert_allclose(x[[0, 2]], 0.5)


def test_singular_matrix_gives_finite_large_components() -> None:
    A = np.array([[[1.0, 1.0], [1.0, 1.0]]])  # rank one
    x = solve_spd(np, A, np.array([[1.0, 1.0]]))
    assert np.isfinite(x).all()


def test_inverse_matches_lapack() -> None:
    rng = np.random.default_rng(7)
    J = rng.normal(size=(50, 3, 20)) * np.array([1e-2, 1.0, 1e4])[None, :, None]
    A = J @ J.transpose(0, 2, 1)
    want = np.linalg.inv(A)
    got = inverse_spd(np, A)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12 * np.abs(want).max())
