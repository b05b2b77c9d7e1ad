"""The first evaluation from the candidates' curves equals evaluating the model."""

from __future__ import annotations

import numpy as np
import pytest

from functions.fitting.solver import SolverOptions, _State, _Stream
from functions.fitting.spec import resolve_spec
from functions.fitting.starts import pick_shared, shared_screen
from functions.fitting.synthetic import synthetic_traces


@pytest.mark.parametrize(
    ("model", "fixed"),
    [
        ("maturation", None),
        ("maturation", {"km": False, "ktl": True}),
        ("maturation_blocked", None),
        ("trivial", None),
        ("exponential_decay", None),
        ("logistic_growth", None),
        ("hill", None),
    ],
)
def test_candidate_normals_equal_the_model_at_the_starts(model: str, fixed: dict | None) -> None:
    spec = resolve_spec(model, fixed=fixed)
    data = synthetic_traces(model, n=64, n_times=90, noise=0.05, seed=7)
    t, y = np.atleast_2d(data.t), data.y
    w = np.ones_like(y)
    screen = shared_screen(np, spec, t)
    starts, cand = pick_shared(np, spec, screen, y, keep=2)
    stream = _Stream(np, spec, t, y, w, out=None, opt=SolverOptions())  # type: ignore[arg-type]
    state = _State(t=t, y=y, w=w, npts=w.sum(axis=1), dense=True)
    for p, c in zip(starts, cand, strict=True):
        # the starts differ between candidates: the test covers several
        assert np.unique(c).size > 1 or screen.cands.shape[0] == 1
        got = screen.normals.normal_equations(np, y, c, p)
        want = stream._evaluate(state, p)
        cost_scale = np.einsum("nt,nt->n", y, y)  # the expanded square rounds at eps·y·y
        assert (np.abs(got[0] - want[0]) <= 1e-12 * cost_scale + 1e-9 * want[0]).all()
        d = np.sqrt(np.einsum("nii->ni", want[1]))
        d = np.where(d > 0, d, 1.0)  # a column that vanishes at the start (a rate at 0)
        dd = d[:, :, None] * d[:, None, :]
        np.testing.assert_allclose(got[1] / dd, want[1] / dd, rtol=0, atol=1e-9)
        g_scale = d * np.sqrt(cost_scale)[:, None]
        np.testing.assert_allclose(got[2] / g_scale, want[2] / g_scale, rtol=0, atol=1e-9)


def test_a_trace_gets_the_same_normal_equations_in_any_batch() -> None:
    """A fan-out's chunks must reproduce the unsplit fit to the bit, so a trace's first
    evaluation may not depend on which other traces share its batch (nor on how many
    chose its candidate: one alone would take numpy's gemv path)."""
    spec = resolve_spec("maturation")
    data = synthetic_traces("maturation", n=64, n_times=90, noise=0.05, seed=8)
    t, y = np.atleast_2d(data.t), data.y
    screen = shared_screen(np, spec, t)
    starts, cand = pick_shared(np, spec, screen, y)
    p, c = starts[0], cand[0]
    whole = screen.normals.normal_equations(np, y, c, p)
    for rows in (np.array([5]), np.arange(3, 20), np.arange(64)[::-1]):
        part = screen.normals.normal_equations(np, y[rows], c[rows], p[rows])
        for a, b in zip(part, whole, strict=True):
            np.testing.assert_array_equal(a, b[rows])


def test_a_trace_gets_the_same_start_in_any_batch() -> None:
    spec = resolve_spec("maturation")
    data = synthetic_traces("maturation", n=16, n_times=90, noise=0.05, seed=9)
    t, y = np.atleast_2d(data.t), data.y
    screen = shared_screen(np, spec, t)
    whole, _ = pick_shared(np, spec, screen, y)
    for i in (0, 7):
        alone, _ = pick_shared(np, spec, screen, y[i : i + 1])
        np.testing.assert_array_equal(alone[0, 0], whole[0, i])
