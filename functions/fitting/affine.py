"""Normal equations at start points from their candidates' curves, without evaluating
the model per trace.

A start point (`starts.SharedScreen`) takes its nonlinear parameters θ from one of a few
candidates shared by every trace, and its linear parameters a (amplitudes, offsets)
from the trace's own projection. The models are affine in a,

    f(θ, a) = F₀(θ) + Σ_j a_j F_j(θ),   ∂f/∂θ_b = D₀_b(θ) + Σ_j a_j D_jb(θ),   ∂f/∂a_j = F_j(θ),

so at a candidate's θ every model value and Jacobian column is a combination of M =
(1 + L)(1 + K) fixed curves Z (F₀, F_j, then D₀_b, D_jb for each free nonlinear θ_b),
with coefficients (1, a) taken from the trace. The curves come from evaluating the model
at a = 0 and at each unit a, once per solve. Per trace, JᵀJ = S G Sᵀ and Jᵀr =
S (Zᵀy - G v), with G = ZᵀZ of its candidate, v the value's coefficients and S the
Jacobian's; the products Zᵀy are one matrix product per candidate. This replaces the
solver's first evaluation of every trace (one of about five).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from common.arrays import to_host
from functions.fitting.linalg import rows_times
from functions.fitting.spec import FitSpec


@dataclass(frozen=True)
class CandidateNormals:
    lin: list[int]  # columns of the free linear parameters (L)
    theta: list[int]  # columns of the free nonlinear parameters (K)
    free: list[int]  # all free columns, in the solver's order
    basis: Any  # (C, T, M) the curves Z of every candidate
    gram: Any  # (C, M, M) ZᵀZ per candidate

    @property
    def width(self) -> int:
        return (1 + len(self.lin)) * (1 + len(self.theta))

    def normal_equations(self, xp: ModuleType, y: Any, cand: Any, p: Any) -> tuple[Any, Any, Any]:
        """Cost ½·|y - f|², JᵀJ and Jᵀr at the points `p` (n, P), each with the nonlinear
        parameters of candidate `cand` (n,), for the traces `y` (n, T).

        The cost comes from the expanded square ½(y·y - 2 v·Zᵀy + v·G v), whose
        rounding (about eps·y·y) is far below the solver's tolerances on the cost.
        """
        n, L, M = y.shape[0], len(self.lin), self.width
        zy = self._products(xp, y, cand)
        G = self.gram[cand]  # (n, M, M)
        e = xp.concatenate([xp.ones((n, 1)), p[:, self.lin]], axis=1)  # (n, 1 + L)
        v = xp.zeros((n, M))
        v[:, : 1 + L] = e
        S = xp.zeros((n, len(self.free), M))
        for a, col in enumerate(self.free):
            if col in self.lin:
                S[:, a, 1 + self.lin.index(col)] = 1.0
            else:
                b = 1 + self.theta.index(col)
                S[:, a, b * (1 + L) : (b + 1) * (1 + L)] = e
        Gv = xp.einsum("nqr,nr->nq", G, v)
        cost = 0.5 * (xp.einsum("nt,nt->n", y, y) - 2.0 * xp.einsum("nq,nq->n", v, zy))
        cost += 0.5 * xp.einsum("nq,nq->n", v, Gv)
        A = (S @ G) @ S.transpose(0, 2, 1)
        g = xp.einsum("nkq,nq->nk", S, zy - Gv)
        return cost, A, g

    def _products(self, xp: ModuleType, y: Any, cand: Any) -> Any:
        """Zᵀy (n, M) of each trace with its own candidate's curves: one matrix product
        per candidate over the traces that chose it (a product with every candidate's
        curves would do C times the work)."""
        n, M = y.shape[0], self.width
        zy = xp.empty((n, M))
        order = xp.argsort(cand, kind="stable") if xp is np else xp.argsort(cand)
        counts = to_host(xp, xp.bincount(cand, minlength=self.basis.shape[0]))
        start = 0
        for c, count in enumerate(counts.tolist()):
            if count:
                rows = order[start : start + count]
                zy[rows] = rows_times(xp, y[rows], self.basis[c])
                start += count
        return zy


def candidate_normals(
    xp: ModuleType, spec: FitSpec, t: Any, cands: Any, lin: list[int]
) -> CandidateNormals:
    """`CandidateNormals` of the candidates `cands` (C, P) on the time axis `t` (1, T)."""
    free = [int(i) for i in np.flatnonzero(spec.free)]
    theta = [i for i in free if i not in lin]
    want = frozenset(spec.names[i] for i in theta)
    C, T = cands.shape[0], t.shape[1]

    def at(ell: np.ndarray) -> tuple[Any, list[Any]]:
        q = cands.copy()
        q[:, lin] = xp.asarray(ell)[None, :]
        f, cols = spec.model.evaluate(xp, t, q, want, spec.constants)
        arrays = (f, *(cols[spec.names[i]] for i in theta))
        shaped = [xp.broadcast_to(xp.asarray(a), (C, T)) for a in arrays]
        return shaped[0], shaped[1:]

    f0, d0 = at(np.zeros(len(lin)))
    units = [at(np.eye(len(lin))[j]) for j in range(len(lin))]
    F = [fj - f0 for fj, _ in units]
    Z = [f0, *F]
    for b in range(len(theta)):
        Z += [d0[b], *(dj[b] - d0[b] for _, dj in units)]
    stack = xp.stack(Z)  # (M, C, T)
    basis = xp.ascontiguousarray(stack.transpose(1, 2, 0))
    gram = xp.einsum("qct,rct->cqr", stack, stack)
    return CandidateNormals(lin, theta, free, basis, gram)
