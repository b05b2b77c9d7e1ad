"""``numpy.histogram`` with equal bins, bin for bin, at about half its cost.

numpy computes each value's bin as ``int((x - lo) / (hi - lo) * bins)`` and then
corrects it against the bin edges, value by value, in blocks of 65,536: a value's bin
is the one whose edges bracket it. Here the position is computed the same way over the
whole array, and only values whose position lies within 1e-3 of an edge (a few in a
thousand; rounding moves a position by ~1e-5) get numpy's comparison with the edges;
every other value is far from any edge, so both agree. Counts and edges are identical.
"""

from __future__ import annotations

import numpy as np

#: fractional positions this close to an edge are re-binned exactly (rounding of the
#: position is ~1e-5 bin widths for float32 data spread over 200 bins)
_NEAR = 1e-3


def uniform_histogram(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of `bins` equal bins from ``x.min()`` to ``x.max()``.

    Parameters
    ----------
    x : ndarray of float32 or float64
        Finite values.
    bins : int

    Returns
    -------
    counts : (bins,) intp ndarray
    edges : (bins + 1,) ndarray
        Exactly ``np.histogram(x, bins)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 0.1, 0.5, 1.0], np.float32)
    >>> uniform_histogram(x, 2)[0].tolist()
    [2, 2]
    """
    flat = x.reshape(-1)
    if not flat.size or not np.issubdtype(flat.dtype, np.floating):
        return np.histogram(x, bins=bins)  # type: ignore[return-value]
    lo, hi = flat.min(), flat.max()  # scalars of the data's type, as numpy keeps them
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.histogram(x, bins=bins)  # type: ignore[return-value]  # numpy says why
    if lo == hi:  # numpy widens an empty range by 0.5 each side
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1, endpoint=True, dtype=np.result_type(lo, hi, flat))
    # numpy's ``(x - lo) / (hi - lo) * bins`` with one product: a position moves by an
    # ulp or so, far below _NEAR, and positions that near an edge are re-binned exactly
    pos = flat - lo
    pos *= flat.dtype.type(bins / (hi - lo))
    # bins fit a small integer: the index and the fractional part (exact: the integer
    # part of a float is a float of the same type) stay in the data's precision, never
    # promoted to float64 by a subtraction of intp
    index = pos.astype(np.int16 if bins < 2**15 else np.intp)
    frac = pos
    frac -= index
    frac -= 0.5  # distance from the bin's middle: near an edge when ~0.5
    np.abs(frac, out=frac)
    near = np.flatnonzero(frac > 0.5 - _NEAR)
    if near.size:
        index[near] = _numpy_bins(flat[near], index[near].astype(np.intp), edges, bins)
    counts = np.bincount(index, minlength=bins)
    return counts, edges


def _numpy_bins(values: np.ndarray, index: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """numpy's correction of computed bins against the edges."""
    index = index.copy()
    index[index == bins] -= 1
    index[values < edges[index]] -= 1
    up = (values >= edges[index + 1]) & (index != bins - 1)
    index[up] += 1
    return index
