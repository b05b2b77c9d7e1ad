"""The working set of the batched solver: per-trace arrays of the traces iterating together.

Rows are slots: a finished row stays (not `live`) until its slot is refilled with a
waiting trace or the set is compacted, so a refill copies only the new rows and a few
finished rows riding along cost less than copying every array to drop them.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


class WorkingSet:
    """Working arrays of the traces being iterated (their rows of the output in `idx`)."""

    FIELDS = (
        "t",
        "y",
        "w",
        "npts",
        "p",
        "idx",
        "lo",
        "hi",
        "lam",
        "nu",
        "it",
        "done",
        "live",
        "cost",
        "A",
        "g",
    )
    t: Any  # (n, T) or (1, T) times
    y: Any  # (n, T) data, 0 where missing
    w: Any  # (n, T) weights
    npts: Any  # (n,) valid points (Σw)
    p: Any  # (n, P) parameters
    idx: Any  # (n,) rows of the output
    lo: Any  # (n, k) bounds of the free parameters
    hi: Any
    lam: Any  # (n,) damping
    nu: Any  # (n,) damping growth
    it: Any  # (n,) evaluations so far
    done: Any  # (n,) converged at the last step
    live: Any  # (n,) still iterating (finished rows stay until refilled or compacted)
    cost: Any  # (n,) ½·SS_res
    A: Any  # (n, k, k) JᵀJ at p (weighted Jacobian of the free parameters)
    g: Any  # (n, k) Jᵀr
    dense: bool  # no missing points in any row: weights need not be applied
    shared_t: bool  # `t` is one time axis (1, T) for every row (decided once per solve)

    def __init__(self, **arrays: Any) -> None:
        self.__dict__.update(arrays)

    @property
    def size(self) -> int:
        return int(self.idx.shape[0])

    @property
    def live_count(self) -> int:
        return int(self.live.sum())

    def _per_row(self) -> list[str]:
        """The fields with a row per trace (all but a time axis shared by every row)."""
        return [n for n in self.FIELDS if not (n == "t" and self.shared_t)]

    def data_of(self, rows: Any) -> WorkingSet:
        """The data of `rows` alone (times, values, weights): what an evaluation reads."""
        return WorkingSet(
            t=self.t if self.shared_t else self.t[rows],
            y=self.y[rows],
            w=self.w if self.dense else self.w[rows],
            npts=self.npts[rows],
            dense=self.dense,
            shared_t=self.shared_t,
        )

    def compact(self, xp: ModuleType, *, below: float = 1.0) -> Any:
        """Drop finished rows when the live fraction is below `below`; returns the kept
        mask (for the caller's own per-row arrays) or None when nothing was dropped."""
        live = self.live
        count = self.live_count
        if count == self.size or count > below * self.size:
            return None
        self.take(xp, live)
        return live

    def take(self, xp: ModuleType, keep: Any) -> None:
        for name in self._per_row():
            setattr(self, name, getattr(self, name)[keep])

    def refill(self, xp: ModuleType, new: WorkingSet) -> None:
        """Put the rows of `new` into finished slots (appending those that do not fit)."""
        slots = xp.flatnonzero(~self.live)[: new.size]
        fit = int(slots.shape[0])

        def put(mine: Any, theirs: Any) -> Any:
            mine[slots] = theirs[:fit]
            return mine if fit == new.size else xp.concatenate([mine, theirs[fit:]])

        for name in self._per_row():
            setattr(self, name, put(getattr(self, name), getattr(new, name)))
        self.dense = self.dense and new.dense
