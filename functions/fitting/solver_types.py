"""What the batched solver is asked (`SolverOptions`) and answers (`SolveOutput`, with a
status code per trace)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Status codes per trace; `REASONS` names them in results.
CONVERGED, MAX_ITER, TOO_FEW_POINTS, NOT_FINITE = 0, 1, 2, 3
REASONS = {
    CONVERGED: "converged",
    MAX_ITER: "max_iterations",
    TOO_FEW_POINTS: "too_few_points",
    NOT_FINITE: "model_not_finite",
}


@dataclass(frozen=True)
class SolverOptions:
    """Stopping rules (as in MINPACK/scipy: relative cost decrease `ftol`, relative step
    `xtol`, cosine between residual and Jacobian columns `gtol`) and batching.

    `lm_starts` is how many of the best start candidates each trace is solved from
    (None: the model's `lm_starts`); the best converged run is kept.
    `working_set` is how many traces iterate together; finished traces are replaced by
    waiting ones, so a few slow traces never leave the arrays nearly empty. On the CPU a
    thousand traces keep Python overhead small per array operation.
    """

    max_iter: int = 200
    ftol: float = 1e-8
    xtol: float = 1e-8
    gtol: float = 1e-8
    multistart: bool = True
    lm_starts: int | None = None
    working_set: int = 1024


@dataclass
class SolveOutput:
    """Per-trace outputs (backend arrays): params (N, P), cost ½·SS_res (N,), JᵀJ over
    the free parameters at the optimum (N, k, k), iterations (N,), status (N,)."""

    params: Any
    cost: Any
    hess: Any
    iterations: Any
    status: Any


@dataclass(frozen=True)
class Box:
    """Each trace's own start values and bounds, (N, P) in the spec's parameter order
    (backend arrays): traces with their own time axes take those of their time-like
    parameters from their axis (`FitSpec.box_on_axes`). Columns of parameters without a
    time window equal the spec's, so the spec still says how linear parameters and
    fixed ones are treated."""

    start: Any
    lower: Any
    upper: Any

    def rows(self, idx: Any) -> Box:
        """The box of the traces `idx`."""
        return Box(self.start[idx], self.lower[idx], self.upper[idx])
