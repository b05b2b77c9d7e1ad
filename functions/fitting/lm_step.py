"""One bounded Levenberg-Marquardt step for every row of a working set.

Each trace has its own damping λ (Nielsen's update [2]_, Marquardt scaling), its own
convergence tests (MINPACK's [1]_) and its own active bound set: a parameter on a bound
is held there when the damped Gauss-Newton step pushes it outwards, and components that
would leave the box stop on it while the others are re-solved. The stream drives the
parts in order (`propose`, `stopped`, `bound`, `settled`, `update`) and takes finished
rows out between them.

References
----------
.. [1] J. J. Moré, "The Levenberg-Marquardt algorithm: implementation and theory",
   Numerical Analysis, Lecture Notes in Mathematics 630 (1978), doi:10.1007/BFb0067700
.. [2] H. B. Nielsen, "Damping parameter in Marquardt's method", IMM-REP-1999-05 (1999).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

import numpy as np

from functions.fitting.linalg import solve_spd
from functions.fitting.solver_types import SolverOptions
from functions.fitting.working_set import WorkingSet


@dataclass
class Proposal:
    """One iteration's step for the rows of a working set, before it is evaluated."""

    pf: Any  # (n, k) the free parameters now
    step: Any  # (n, k) the change proposed
    blocked: Any  # (n, k) held on a bound the step pushes against
    g_eff: Any  # (n, k) Jᵀr without the blocked components
    damped: Any  # (n, k, k) JᵀJ + λ·D
    trial: Any = None  # (n, P) where the step leads, inside the box (set by `bound`)
    pred: Any = None  # (n,) the cost decrease the damped model predicts (set by `bound`)

    def take(self, keep: Any) -> Proposal:
        """The proposal for the rows in `keep` (after the working set was compacted)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Proposal(**{k: None if v is None else v[keep] for k, v in values.items()})


def propose(xp: ModuleType, s: WorkingSet, free: np.ndarray) -> Proposal:
    """The damped Gauss-Newton step at `s.p`, with Marquardt scaling by the current
    diagonal (floored for empty columns), and the components a bound blocks."""
    A, g = s.A, s.g
    diag = xp.diagonal(A, axis1=1, axis2=2)
    pf = s.p[:, free]
    top = diag.max(axis=1, keepdims=True)
    D = xp.maximum(diag, xp.where(top > 0, 1e-12 * top, 1.0))
    damped = A + xp.eye(free.size) * (s.lam[:, None] * D)[:, :, None]
    step = solve_spd(xp, damped, g)
    # A parameter on a bound is held there only when the damped Gauss-Newton step
    # pushes it outwards. (Holding it whenever the gradient points outwards stalls
    # at saddles such as an amplitude at 0 whose rate then has no gradient.)
    blocked = ((pf <= s.lo) & (step < 0)) | ((pf >= s.hi) & (step > 0))
    g_eff = xp.where(blocked, 0.0, g)
    return Proposal(pf=pf, step=step, blocked=blocked, g_eff=g_eff, damped=damped)


def stopped(
    xp: ModuleType, s: WorkingSet, proposal: Proposal, opt: SolverOptions
) -> tuple[Any, Any]:
    """Rows that converged (the last step was small, the gradient is orthogonal to the
    residual within `gtol`, a perfect fit, or λ ran away) and rows out of iterations."""
    diag = xp.diagonal(s.A, axis1=1, axis2=2)
    # Cosine between the residual and each Jacobian column (MINPACK's gtol test).
    cosine = xp.abs(proposal.g_eff) / (xp.sqrt(diag) * xp.sqrt(2.0 * s.cost)[:, None] + 1e-300)
    converged = s.done | (cosine.max(axis=1) <= opt.gtol) | (s.cost == 0) | (s.lam > 1e16)
    converged &= s.live
    hit_max = ~converged & (s.it >= opt.max_iter) & s.live
    return converged, hit_max


def bound(xp: ModuleType, s: WorkingSet, free: np.ndarray, proposal: Proposal) -> None:
    """Keep the step in the box; sets `proposal.trial` and `proposal.pred`.

    Blocked components are held at zero; components that would leave the box stop on it
    and the others are re-solved with them held there, so the step stays a descent step
    of the damped model.
    """
    lo, hi, pf, blocked = s.lo, s.hi, proposal.pf, proposal.blocked
    step = proposal.step
    if bool(blocked.any()):
        step = held_step(xp, proposal.damped, s.g, step, blocked, xp.zeros_like(step))
    leaving = ((pf + step < lo) | (pf + step > hi)) & ~blocked
    if bool(leaving.any()):
        to_bound = xp.where(leaving, xp.clip(pf + step, lo, hi) - pf, 0.0)
        step = held_step(xp, proposal.damped, s.g, step, blocked | leaving, to_bound)
    trial_f = xp.clip(pf + step, lo, hi)
    step = trial_f - pf
    trial = s.p.copy()
    trial[:, free] = trial_f
    g_eff = proposal.g_eff
    pred = xp.einsum("nk,nk->n", step, g_eff) - 0.5 * xp.einsum("nk,nkj,nj->n", step, s.A, step)
    proposal.step, proposal.trial, proposal.pred = step, trial, pred


def settled(s: WorkingSet, proposal: Proposal, opt: SolverOptions) -> Any:
    """Rows whose lightly damped step promises less than `ftol` of the cost: converged
    (MINPACK's predicted-reduction test), so the step need not be evaluated."""
    pred = proposal.pred
    return (s.lam <= 1e-2) & (pred >= 0) & (pred <= opt.ftol * s.cost) & s.live


def update(
    xp: ModuleType,
    s: WorkingSet,
    proposal: Proposal,
    evaluated: tuple[Any, Any, Any],
    opt: SolverOptions,
) -> None:
    """Accept or reject each row's step by its gain ratio, update λ (Nielsen) and note
    the rows whose accepted step was small enough to call them converged."""
    cost_new, A_new, g_new = evaluated
    pred, step = proposal.pred, proposal.step
    actual = s.cost - cost_new
    rho = actual / xp.where(pred > 0, pred, 1.0)
    # A clipped step can leave the model's descent cone (pred <= 0): it is rejected
    # like any other, and a larger λ turns the next one towards the gradient.
    accept = xp.isfinite(cost_new) & (pred > 0) & (rho > 1e-4)
    # Small changes only mean convergence when the step was a trusted, lightly
    # damped Gauss-Newton step; a heavily damped step is short for other reasons.
    trusted = accept & (rho > 0.25) & (s.lam <= 1.0)
    small_f = trusted & (actual <= opt.ftol * s.cost)
    small_x = trusted & (xp.abs(step) <= opt.xtol * (opt.xtol + xp.abs(proposal.pf))).all(axis=1)
    s.done = small_f | small_x
    s.p = xp.where(accept[:, None], proposal.trial, s.p)
    s.cost = xp.where(accept, cost_new, s.cost)
    s.A = xp.where(accept[:, None, None], A_new, s.A)
    s.g = xp.where(accept[:, None], g_new, s.g)
    shrink = xp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
    s.lam = xp.maximum(xp.where(accept, s.lam * shrink, s.lam * s.nu), 1e-15)
    s.nu = xp.where(accept, 2.0, 2.0 * s.nu)
    s.it = s.it + 1


def held_step(xp: ModuleType, M: Any, g: Any, step: Any, held: Any, fixed: Any) -> Any:
    """Re-solve `M s = g` with the `held` components of s fixed to `fixed` (rows
    without held components keep `step`). Only the rows with held components are
    solved again: usually a few of the working set."""
    rows = xp.flatnonzero(held.any(axis=1))
    M, g, held, fixed = M[rows], g[rows], held[rows], fixed[rows]
    eye = xp.eye(M.shape[1], dtype=bool)
    rhs = xp.where(held, fixed, g - xp.einsum("nij,nj->ni", M, fixed))
    off = held[:, :, None] | held[:, None, :]
    reduced = xp.where(off, 0.0, M) + eye * held[:, :, None]
    out = step.copy()
    out[rows] = solve_spd(xp, reduced, rhs)
    return out
