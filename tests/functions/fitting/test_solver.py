"""The batched solver: parameter recovery, parity with scipy, bounds, ragged data."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import JobCancelled
from functions.fitting.fit import fit_traces
from functions.fitting.reference import fit_reference, parity
from functions.fitting.solver import SolverOptions
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces

# Recovery with 0.2 % noise (of each trace's range), 12 traces per model. Parameters
# the data pin down are checked against a relative tolerance; every parameter is also
# checked against its own standard error (|error| <= 5 SE), which is what the fit
# claims about itself. Parameters the model cannot separate are listed apart.
RELATIVE = {
    "maturation": {"ktl": 0.02, "delta": 0.05},
    "maturation_blocked": {"km": 0.1, "beta": 0.02},
    "trivial": {"t0": 0.02, "ktl": 0.02},
    "exponential_decay": {"amplitude": 0.01, "rate": 0.01},
    "logistic_growth": {"capacity": 0.01, "rate": 0.01, "t_mid": 0.01},
    "hill": {"top": 0.01, "ec50": 0.02, "n": 0.02},
}
# trivial is symmetric in (delta, beta); maturation_blocked's t0 only shows through the
# samples it switches on, so its G0/Gu0 split moves with it (checked by cost instead).
NOT_BY_SE = {"trivial": {"delta", "beta"}, "maturation_blocked": {"t0", "G0", "Gu0"}}


@pytest.mark.parametrize("model", sorted(RELATIVE))
def test_recovers_known_parameters(model: str) -> None:
    s = synthetic_traces(model, n=12, noise=0.002, seed=3)
    spec = resolve_spec(model)
    fit = fit_traces(spec, s.t, s.y)
    assert fit.success.all()
    assert (fit.r_squared > 0.999).all()
    err = np.abs(fit.params - s.params)
    for name, tol in RELATIVE[model].items():
        i = spec.names.index(name)
        assert (err[:, i] <= tol * np.abs(s.params[:, i])).all(), name
    for i in np.flatnonzero(spec.free).tolist():
        if spec.names[i] not in NOT_BY_SE.get(model, set()):
            assert (err[:, i] <= 5 * fit.stderr[:, i]).all(), spec.names[i]
    # The fit is at least as good as the truth it was generated from.
    truth_ss = np.nansum((spec.model.eval(s.t, s.params) - s.y) ** 2, axis=1)
    assert (fit.ss_res <= truth_ss * (1 + 1e-9)).all()
    if model == "trivial":  # the pair (delta, beta) is recovered, in either order
        pair = [spec.names.index("delta"), spec.names.index("beta")]
        got, true = np.sort(fit.params[:, pair], axis=1), np.sort(s.params[:, pair], axis=1)
        np.testing.assert_allclose(got, true, rtol=0.02)
    if model == "maturation_blocked":  # t0 within one sampling interval (1/6 h)
        assert (err[:, 0] <= 1 / 6 + 1e-9).all()


# trivial's value has a kink at t0 (its slope jumps from 0 to ktl): when the best t0 is
# exactly a sample time, the solver can stop there before the other parameters settle
# (the retry from the sample's other side fixes the near-miss cases). Measured on 200
# and 400 traces: 98.5-99 %, every miss within 3e-4 of scipy's cost.
PARITY = [
    ("maturation", 40, 1.0),
    ("exponential_decay", 15, 1.0),
    ("logistic_growth", 15, 1.0),
    ("hill", 15, 1.0),
    ("maturation_blocked", 8, 1.0),
    ("trivial", 15, 0.9),
]


@pytest.mark.parametrize(("model", "n", "rate"), PARITY)
def test_parity_with_scipy_least_squares(model: str, n: int, rate: float) -> None:
    """Wherever scipy (same model, bounds, start) converges, our cost is <= its cost
    x (1 + 1e-6) or our parameters agree within 1e-3 relative."""
    s = synthetic_traces(model, n=n, noise=0.02, seed=7)
    spec = resolve_spec(model)
    ours = fit_traces(spec, s.t, s.y)
    ref = fit_reference(spec.for_times(s.t), s.t, s.y)  # the bounds the fit used
    agreement = parity(ours, ref)
    assert agreement["compared"] >= n - 1
    assert agreement["either_rate"] >= rate, agreement


def test_b_zero_ground_truth_is_recovered() -> None:
    """Traces generated exactly at delta = beta (the b = 0 singular point)."""
    s = synthetic_traces("maturation", n=8, noise=0.002, seed=9, fixed={"delta": 5.22e-3})
    fit = fit_traces(resolve_spec("maturation"), s.t, s.y)
    assert fit.success.all()
    np.testing.assert_allclose(fit.params[:, 2], 5.22e-3, rtol=0.1)
    np.testing.assert_allclose(fit.params[:, 1], s.params[:, 1], rtol=0.02)


def test_trivial_delta_equals_beta_ground_truth() -> None:
    beta = 0.0436275356035
    s = synthetic_traces("trivial", n=8, noise=0.002, seed=9, fixed={"delta": beta, "beta": beta})
    spec = resolve_spec("trivial", fixed={"beta": True})
    fit = fit_traces(spec, s.t, s.y)
    assert fit.success.all()
    np.testing.assert_allclose(fit.params[:, 2], beta, rtol=0.02)


def test_bounds_are_honoured() -> None:
    s = synthetic_traces("maturation", n=20, noise=0.02, seed=2)
    spec = resolve_spec(
        "maturation", bounds={"delta": (0.05, 0.08), "t0": (-0.2, 0.2)}, params={"delta": 0.06}
    )
    fit = fit_traces(spec, s.t, s.y)
    free = spec.free
    assert (fit.params[:, free] >= spec.lower[free]).all()
    assert (fit.params[:, free] <= spec.upper[free]).all()
    below = s.params[:, 2] < 0.05
    assert below.any() and np.allclose(fit.params[below, 2], 0.05)


def test_fixed_parameters_keep_their_values() -> None:
    s = synthetic_traces("maturation", n=5, noise=0.01, seed=2)
    spec = resolve_spec("maturation", params={"t0": 0.1}, fixed={"t0": True})
    fit = fit_traces(spec, s.t, s.y)
    assert (fit.params[:, 0] == 0.1).all() and np.isnan(fit.stderr[:, 0]).all()
    assert np.isfinite(fit.stderr[:, 1:4]).all()


def test_ragged_and_degenerate_traces_get_reasons() -> None:
    s = synthetic_traces("maturation", n=10, noise=0.01, missing=0.2, ragged=True, seed=5)
    y = s.y.copy()
    y[3] = np.nan  # all-NaN trace
    y[4, :] = np.nan
    y[4, :3] = 1.0  # three points for four free parameters
    y[5, 7] = np.inf  # an infinite point is left out, not propagated
    fit = fit_traces(resolve_spec("maturation"), s.t, y)
    assert fit.reasons[3] == "too_few_points" and fit.n_points[3] == 0
    assert fit.reasons[4] == "too_few_points" and fit.n_points[4] == 3
    assert not fit.success[[3, 4]].any() and np.isnan(fit.r_squared[[3, 4]]).all()
    others = np.setdiff1d(np.arange(10), [3, 4])
    assert fit.success[others].all()
    assert (fit.n_points[others] == np.isfinite(y[others]).sum(axis=1)).all()


def test_deterministic_and_independent_of_batching() -> None:
    s = synthetic_traces("maturation", n=30, noise=0.02, seed=6)
    spec = resolve_spec("maturation")
    a = fit_traces(spec, s.t, s.y)
    b = fit_traces(spec, s.t, s.y)
    np.testing.assert_array_equal(a.params, b.params)
    c = fit_traces(spec, s.t, s.y, options=SolverOptions(working_set=7), workers=2)
    np.testing.assert_allclose(c.params, a.params, rtol=1e-9)
    alone = fit_traces(spec, s.t, s.y[11:12])
    np.testing.assert_allclose(alone.params[0], a.params[11], rtol=1e-9)


@pytest.mark.parametrize("model", ["maturation", "maturation_blocked", "logistic_growth"])
def test_a_trace_fits_the_same_in_any_batch_and_alone(model: str) -> None:
    """A trace's fit depends on its own data and time axis only, to the bit: in working
    sets of any size, refilled one trace at a time, on two threads, and alone (as in a
    fan-out's one-trace chunk). Traces with missing points sit beside complete ones:
    which start screen a trace gets (the shared axis's, or its own) is its own matter,
    never its batch's."""
    spec = resolve_spec(model)
    s = synthetic_traces(model, n=12, n_times=60, noise=0.03, seed=5, missing=0.1)
    y = np.where(np.arange(12)[:, None] % 2 == 0, s.y, np.nan_to_num(s.y, nan=s.y[0, 0]))
    shift = np.random.default_rng(1).choice([0.0, 0.3, 4.0], size=12)
    own = np.where(np.isnan(y), np.nan, s.t[None, :] + shift[:, None])
    for t in (s.t, own):
        whole = fit_traces(spec, t, y)
        for working_set, workers in ((1, 1), (3, 2)):
            options = SolverOptions(working_set=working_set)
            batched = fit_traces(spec, t, y, options=options, workers=workers)
            np.testing.assert_array_equal(batched.params, whole.params)
        for k in (0, 5):
            alone = fit_traces(spec, t if t.ndim == 1 else t[k : k + 1], y[k : k + 1])
            np.testing.assert_array_equal(alone.params[0], whole.params[k])


def test_progress_and_cancellation() -> None:
    s = synthetic_traces("exponential_decay", n=20, noise=0.01, seed=1)
    spec = resolve_spec("exponential_decay")
    seen: list[float] = []
    fit_traces(spec, s.t, s.y, progress=seen.append, options=SolverOptions(working_set=4))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 2
    with pytest.raises(JobCancelled):
        fit_traces(spec, s.t, s.y, cancelled=lambda: True)


def test_shape_errors_name_the_shapes() -> None:
    spec = resolve_spec("hill")
    with pytest.raises(ValueError, match=r"t must be \(T,\) or \(N, T\) matching y \(2, 5\)"):
        fit_traces(spec, np.arange(4.0), np.ones((2, 5)))
    with pytest.raises(ValueError, match="non-empty"):
        fit_traces(spec, np.arange(4.0), np.ones((0, 4)))


def test_columns_given_as_terms_fit_like_formed_columns() -> None:
    """The maturation kernel gives its Jacobian as shared arrays with per-trace factors;
    the same kernel with every column formed must fit to the same result."""
    import dataclasses

    from functions.fitting.kernels import materialize

    spec = resolve_spec("maturation")
    model = spec.model

    def formed(xp, t, p, want):  # type: ignore[no-untyped-def]
        value, cols = model.kernel(xp, t, p, want)
        assert any(isinstance(c, tuple) for c in cols.values())  # terms are in use
        return value, {name: materialize(col) for name, col in cols.items()}

    plain = dataclasses.replace(spec, model=dataclasses.replace(model, kernel=formed))
    s = synthetic_traces("maturation", n=40, n_times=90, noise=0.03, seed=11)
    a = fit_traces(spec, s.t, s.y)
    b = fit_traces(plain, s.t, s.y)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-7)
    np.testing.assert_allclose(a.ss_res, b.ss_res, rtol=1e-9)
    np.testing.assert_allclose(a.stderr, b.stderr, rtol=1e-5)


def test_each_trace_gets_bounds_from_its_own_time_axis() -> None:
    """Traces with their own time axes (cells imaged from different times, for
    different lengths) take their onset bounds from their own axis, whatever traces are
    fitted with them, in one solve; a trace's fit is the same to the bit in any batch,
    and alone."""
    s = synthetic_traces("maturation", n=24, noise=0.005, seed=4, onsets=(0.0, 0.6))
    rng = np.random.default_rng(4)
    shift = rng.choice([0.0, 0.05, 8.0, 20.0], size=24)
    t = s.t[None, :] + shift[:, None]  # same curve, shifted in time
    y = s.y.copy()
    y[::3, 120:] = np.nan  # a third are shorter
    t[np.isnan(y)] = np.nan
    params = s.params.copy()
    params[:, 0] += shift
    spec = resolve_spec("maturation")
    fit = fit_traces(spec, t, y)
    i = spec.names.index("t0")
    for k in range(24):
        own = spec.for_times(t[k])
        assert (fit.lower[k, i], fit.upper[k, i]) == (own.lower[i], own.upper[i])
    assert len(set(zip(fit.lower[:, i], fit.upper[:, i], strict=True))) >= 5
    assert fit.success.all()
    assert (np.abs(fit.params[:, i] - params[:, i]) < 0.1).mean() >= 0.95
    order = rng.permutation(24)
    shuffled = fit_traces(spec, t[order], y[order], options=SolverOptions(working_set=5))
    np.testing.assert_array_equal(shuffled.lower, fit.lower[order])
    np.testing.assert_array_equal(shuffled.upper, fit.upper[order])
    np.testing.assert_array_equal(shuffled.params, fit.params[order])
    for k in (0, 7):  # alone: a time axis of its own still, though it is the only one
        alone = fit_traces(spec, t[k : k + 1], y[k : k + 1])
        np.testing.assert_array_equal(alone.lower[0], fit.lower[k])
        np.testing.assert_array_equal(alone.params[0], fit.params[k])
