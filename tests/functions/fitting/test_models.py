"""Model registry: analytic Jacobians against finite differences, singular limits."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import InvalidInput
from functions.fitting.models import MODELS, get_model, list_models

T = np.linspace(0.05, 30.0, 60)
DOSES = np.geomspace(0.01, 100.0, 60)


def _points(name: str) -> tuple[np.ndarray, np.ndarray]:
    """x values and three parameter rows (defaults, and two perturbed sets)."""
    m = MODELS[name]
    p = np.tile([q.default for q in m.parameters], (3, 1)).astype(float)
    p[1] *= 1.1
    p[2] *= 0.93
    if name == "maturation":
        p[:, 2] = [0.05, 0.2, 0.5]  # delta away from beta
        p[:, 3] = [0.0, 5.0, -3.0]
    return (DOSES if name == "hill" else T), p


def test_registry_describes_every_model() -> None:
    listed = {m["name"]: m for m in list_models()}
    assert set(listed) >= {
        "maturation",
        "maturation_blocked",
        "trivial",
        "exponential_decay",
        "logistic_growth",
        "hill",
    }
    for entry in listed.values():
        assert entry["equation"] and entry["description"]
        for p in entry["parameters"]:
            assert p["lower"] <= p["default"] <= p["upper"], p
            assert set(p) >= {"name", "default", "lower", "upper", "unit", "fixed"}
    fixed = {p["name"] for p in listed["maturation"]["parameters"] if p["fixed"]}
    assert fixed == {"km", "beta", "scale"}
    # time-like parameters say where their default bounds come from
    onset = listed["maturation"]["parameters"][0]
    assert onset["name"] == "t0" and onset["window"] == [-0.05, 0.0, 1.0]
    assert "from the data's time axis" in onset["description"]
    assert "first time - 5 % of the time span" in onset["description"]


def test_unknown_model_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown model 'nope'"):
        get_model("nope")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jacobian_matches_central_differences(name: str) -> None:
    m = MODELS[name]
    x, p = _points(name)
    jac = m.jacobian(x, p)
    assert jac.shape == (3, x.size, len(m.parameters))
    for i in range(len(m.parameters)):
        h = 1e-6 * max(abs(p[0, i]), 1.0) if i else 1e-6
        up, down = p.copy(), p.copy()
        up[:, i] += h
        down[:, i] -= h
        fd = (m.eval(x, up) - m.eval(x, down)) / (2 * h)
        scale = np.abs(fd).max() + np.abs(m.eval(x, p)).max() * 1e-9 + 1e-12
        # central differences are accurate to ~1e-6 relative here; the step models'
        # kinks (t0) sit between the sample points
        assert np.abs(jac[..., i] - fd).max() / scale < 1e-5, m.names[i]


@pytest.mark.parametrize("shape", [(1,), (4,)])
def test_eval_broadcasts_times_and_parameter_rows(shape: tuple[int, ...]) -> None:
    m = MODELS["maturation"]
    p = np.tile([q.default for q in m.parameters], (*shape, 1))
    out = m.eval(T, p)
    assert out.shape == (shape[0], T.size)
    per_row = m.eval(np.tile(T, (shape[0], 1)), p)
    np.testing.assert_array_equal(out, per_row)
    with pytest.raises(ValueError, match="expected t"):
        m.eval(T, np.ones((2, 3)))


def _maturation_limit(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """b = 0 (delta = beta): bracket = e^{-beta u} (expm1(-km u) + km u) / km."""
    t0, ktl, _, offset, km, beta, scale = p
    u = np.maximum(t - t0, 0.0)
    return scale * (ktl * np.exp(-beta * u) * (np.expm1(-km * u) + km * u) / km + offset)


def test_maturation_b_zero_gives_the_analytic_limit() -> None:
    m = MODELS["maturation"]
    p = np.array([0.3, 1e3, 5.22e-3, 10.0, 1.28, 5.22e-3, 1.0])  # delta == beta
    np.testing.assert_allclose(m.eval(T, p)[0], _maturation_limit(T, p), rtol=1e-13)
    assert np.isfinite(m.jacobian(T, p)).all()
    # continuity: approaching b = 0 from both sides changes values linearly in b
    for eps in (1e-3, 1e-6, 1e-9, -1e-9, -1e-6):
        q = p.copy()
        q[2] += eps
        diff = np.abs(m.eval(T, q)[0] - m.eval(T, p)[0]).max()
        assert diff <= 1e3 * abs(eps) * np.abs(m.eval(T, p)).max()
        assert np.isfinite(m.jacobian(T, q)).all()


def test_maturation_jacobian_is_continuous_at_b_zero() -> None:
    m = MODELS["maturation"]
    p = np.array([0.3, 1e3, 5.22e-3, 10.0, 1.28, 5.22e-3, 1.0])
    at = m.jacobian(T, p)[0]
    near = p.copy()
    near[2] += 1e-7
    np.testing.assert_allclose(m.jacobian(T, near)[0], at, rtol=1e-4, atol=1e-6 * np.abs(at).max())


def test_maturation_matches_the_textbook_form_away_from_singularities() -> None:
    m = MODELS["maturation"]
    t0, ktl, delta, offset, km, beta, scale = 0.2, 2e3, 0.08, 5.0, 1.28, 5.22e-3, 1.0
    u = np.maximum(T - t0, 0)
    b = beta - delta
    ref = (
        ktl
        * (
            np.exp(-(beta + km) * u) / (b + km)
            - np.exp(-beta * u) / b
            + km * np.exp(-delta * u) / (b * (b + km))
        )
        + offset
    )
    got = m.eval(T, [t0, ktl, delta, offset, km, beta, scale])[0]
    np.testing.assert_allclose(got, scale * ref, rtol=1e-10, atol=1e-9)


def test_maturation_second_singularity_is_finite() -> None:
    m = MODELS["maturation"]
    p = np.array([0.0, 1e3, 1.28 + 5.22e-3, 0.0, 1.28, 5.22e-3, 1.0])  # b + km = 0
    assert np.isfinite(m.eval(T, p)).all() and np.isfinite(m.jacobian(T, p)).all()
    q = p.copy()
    q[2] += 1e-5
    np.testing.assert_allclose(m.eval(T, p), m.eval(T, q), rtol=1e-4)


def test_trivial_delta_equals_beta_gives_the_limit() -> None:
    m = MODELS["trivial"]
    beta = 0.0436275356035
    p = np.array([2.0, 20.0, beta, beta, 3.0])
    u = np.maximum(T - 2.0, 0)
    np.testing.assert_allclose(m.eval(T, p)[0], 3.0 + 20.0 * u * np.exp(-beta * u), rtol=1e-13)
    assert np.isfinite(m.jacobian(T, p)).all()
    q = p.copy()
    q[2] += 1e-8
    np.testing.assert_allclose(m.eval(T, q), m.eval(T, p), rtol=1e-6)
    at = m.jacobian(T, p)
    np.testing.assert_allclose(m.jacobian(T, q), at, rtol=1e-5, atol=1e-7 * np.abs(at).max())


def test_values_before_onset_are_the_offset() -> None:
    for name in ("maturation", "maturation_blocked", "trivial"):
        m = MODELS[name]
        p = np.array([[q.default for q in m.parameters]])
        p[0, 0] = 0.9  # t0
        p[0, m.names.index("offset")] = 7.0
        early = m.eval(np.array([0.0, 0.5, 0.9]), p)
        np.testing.assert_allclose(early, 7.0)
