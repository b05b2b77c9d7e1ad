"""The reference practice: one `scipy.optimize.least_squares` call per trace.

Used by the parity tests and the benchmark to compare the batched solver against the
field's usual loop (same model, bounds and start; scipy's default "trf" method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from functions.fitting.fit import FitArrays
from functions.fitting.spec import FitSpec


@dataclass(frozen=True)
class ReferenceFit:
    """Per-trace outcome of the scipy loop: params (N, P), SS_res (N,), converged (N,)."""

    params: np.ndarray
    ss_res: np.ndarray
    converged: np.ndarray


def fit_reference(
    spec: FitSpec,
    t: np.ndarray,
    y: np.ndarray,
    *,
    jac: Literal["2-point", "analytic"] = "2-point",
) -> ReferenceFit:
    """Fit each row of `y` with `scipy.optimize.least_squares` from `spec.start`.

    Parameters
    ----------
    spec : FitSpec
    t : (T,) ndarray
        Times shared by all traces.
    y : (N, T) ndarray
        Traces; NaN points are left out per trace.
    jac : {"2-point", "analytic"}
        scipy's default finite differences, or the model's analytic Jacobian.
    """
    from scipy.optimize import least_squares

    model, free = spec.model, spec.free
    n = y.shape[0]
    params = np.tile(spec.start, (n, 1))
    ss_res = np.full(n, np.nan)
    converged = np.zeros(n, dtype=bool)
    lower, upper, x0 = spec.lower[free], spec.upper[free], spec.start[free]
    full = spec.start.copy()
    for i in range(n):
        ok = np.isfinite(y[i])
        ti, yi = t[ok], y[i][ok]
        if ok.sum() < free.sum():
            continue

        def residual(p: np.ndarray, ti: np.ndarray = ti, yi: np.ndarray = yi) -> np.ndarray:
            full[free] = p
            return model.eval(ti, full)[0] - yi  # type: ignore[no-any-return]

        def jacobian(p: np.ndarray, ti: np.ndarray = ti) -> np.ndarray:
            full[free] = p
            return model.jacobian(ti, full)[0][:, free]  # type: ignore[no-any-return]

        res = least_squares(
            residual, x0, bounds=(lower, upper), jac=jacobian if jac == "analytic" else "2-point"
        )
        params[i, free] = res.x
        ss_res[i] = 2.0 * res.cost
        converged[i] = res.status > 0
    return ReferenceFit(params, ss_res, converged)


def parity(
    ours: FitArrays, ref: ReferenceFit, *, rel_cost: float = 1e-6, rel_params: float = 1e-3
) -> dict[str, float | int]:
    """Agreement over the traces where the reference converged.

    Returns the count compared, the fraction where our SS_res <= the reference's
    x (1 + `rel_cost`), the fraction whose free parameters agree within `rel_params`
    (relative), and the fraction meeting either.
    """
    mask = ref.converged
    free = ours.free
    cost_ok = ours.ss_res[mask] <= ref.ss_res[mask] * (1.0 + rel_cost)
    a, b = ours.params[mask][:, free], ref.params[mask][:, free]
    params_ok = (np.abs(a - b) <= rel_params * np.maximum(np.abs(b), 1e-12)).all(axis=1)
    n = int(mask.sum())
    return {
        "compared": n,
        "cost_rate": float(cost_ok.mean()) if n else float("nan"),
        "params_rate": float(params_ok.mean()) if n else float("nan"),
        "either_rate": float((cost_ok | params_ok).mean()) if n else float("nan"),
    }
