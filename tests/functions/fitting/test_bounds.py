"""Default bounds that fit the data: onsets anywhere in the time-lapse are recovered with
the default bounds, and a parameter that ends on a bound is reported and graded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from functions.fitting.fit import fit_traces
from functions.fitting.results import quality_band, search_limited
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces

# Onsets (and mid-points) over the first 85 % of a 30-hour time-lapse (180 frames of
# 10 min; the rest leaves too few frames after the onset), 0.5 % noise (of each trace's
# range). Per model, the parameters these data identify: time-like ones within an
# absolute tolerance in hours, the others within a relative one. Not listed: parameters
# the model cannot separate (trivial's δ and β are symmetric; maturation's δ and
# offset trade off over a short rise; maturation_blocked's G0/Gu0 split moves with t0,
# which only shows to within a frame).
IDENTIFIED = {
    "maturation": {"t0": ("h", 0.1), "ktl": ("rel", 0.05)},
    "trivial": {"t0": ("h", 0.1), "ktl": ("rel", 0.05)},
    "maturation_blocked": {"t0": ("h", 1 / 6), "beta": ("rel", 0.05)},
    "logistic_growth": {"t_mid": ("h", 0.1), "capacity": ("rel", 0.05), "rate": ("rel", 0.05)},
    "exponential_decay": {"amplitude": ("rel", 0.05), "rate": ("rel", 0.05)},
    "hill": {"top": ("rel", 0.05), "ec50": ("rel", 0.05), "n": ("rel", 0.05)},
}
SHARE = 0.95


def _recovered(model: str, fit_params: np.ndarray, truth: np.ndarray, t: np.ndarray) -> Any:
    names = resolve_spec(model).names
    ok = np.ones(truth.shape[0], dtype=bool)
    for name, (kind, tol) in IDENTIFIED[model].items():
        i = names.index(name)
        err = np.abs(fit_params[:, i] - truth[:, i])
        within = err <= (tol if kind == "h" else tol * np.abs(truth[:, i]))
        if model == "maturation_blocked" and name == "beta":
            # the decay rate shows only where the trace decays by 40 % after the block
            seen = truth[:, i] * (t[-1] - truth[:, names.index("t0")]) >= 0.5
            within |= ~seen
        ok &= within
    return ok


@pytest.mark.parametrize("model", sorted(IDENTIFIED))
def test_onsets_anywhere_in_the_time_lapse_are_recovered(model: str) -> None:
    s = synthetic_traces(model, n=100, noise=0.005, seed=3, onsets=(0.0, 0.85))
    spec = resolve_spec(model)
    fit = fit_traces(spec, s.t, s.y)
    assert fit.success.mean() >= SHARE
    assert _recovered(model, fit.params, s.params, s.t).mean() >= SHARE
    # no onset ends on its bound, and the fits are graded good
    windowed = spec.windowed
    assert not (fit.at_bound()[:, windowed] != 0).any()
    quality = quality_band(fit.r_squared, fit.success, search_limited(fit, model))
    assert (quality == "good").mean() >= SHARE


def test_the_demo_time_lapse_onsets_are_recovered() -> None:
    """The issue's case: a 10-hour time-lapse (60 frames of 10 min), onsets from 0 to
    1.9 h. The old default bounds (t0 in [-1, 1] h) pinned every later onset, biased the
    translation rate by 25-30 % and still graded the fit good."""
    s = synthetic_traces("maturation", n=100, n_times=60, noise=0.005, seed=5)
    truth = s.params.copy()
    truth[:, 0] = np.random.default_rng(5).uniform(0.0, 1.9, 100)
    model = resolve_spec("maturation").model
    clean = model.eval(s.t, truth)
    y = clean + np.random.default_rng(6).normal(size=clean.shape) * 0.005 * np.ptp(
        clean, axis=1, keepdims=True
    )
    fit = fit_traces(resolve_spec("maturation"), s.t, y)
    assert _recovered("maturation", fit.params, truth, s.t).mean() >= SHARE
    assert not (fit.at_bound()[:, 0] != 0).any()
    # the old bounds, given by the request: every onset beyond them is reported on the
    # bound and its fit is not good, though its R² is
    old = fit_traces(resolve_spec("maturation", bounds={"t0": (-1.0, 1.0)}), s.t, y)
    beyond = truth[:, 0] > 1.05
    assert beyond.sum() >= 30
    assert (old.at_bound()[beyond, 0] == 1).all() and (old.params[beyond, 0] == 1.0).all()
    quality = quality_band(old.r_squared, old.success, search_limited(old, "maturation"))
    assert (old.r_squared[beyond] > 0.9).all() and not (quality[beyond] == "good").any()
    assert (quality[truth[:, 0] < 0.9] == "good").mean() >= SHARE


def test_a_protein_that_does_not_degrade_ends_at_the_floor_and_stays_good() -> None:
    """Cells with no degradation at all (δ = 0, below the 1e-5 /h floor): a fit that
    ends on the floor says so in at_bound; a rate at its floor is a legitimate answer,
    so the fit stays good and the onset and translation rate are still recovered."""
    s = synthetic_traces(
        "maturation", n=100, noise=0.005, seed=8, onsets=(0.0, 0.85), fixed={"delta": 0.0}
    )
    spec = resolve_spec("maturation")
    fit = fit_traces(spec, s.t, s.y)
    i = spec.names.index("delta")
    side = fit.at_bound()
    floor = side[:, i] == -1
    # about half the noisy estimates of 0 fall below the floor, which holds them there
    assert floor.mean() >= 0.3
    assert (fit.params[floor, i] <= 1e-5 + 0.1 * fit.stderr[floor, i]).all()
    # the others are estimates consistent with no degradation, not on the floor
    assert (fit.params[~floor, i] < 3 * fit.stderr[~floor, i] + 1e-5).mean() >= SHARE
    assert not (side[:, np.arange(len(spec.names)) != i] != 0).any()
    quality = quality_band(fit.r_squared, fit.success, search_limited(fit, "maturation"))
    assert (quality[floor] == "good").all()
    assert _recovered("maturation", fit.params, s.params, s.t).mean() >= SHARE
