"""Vectorised model kernels: values and analytic Jacobian columns for many traces.

A kernel takes the array module `xp` (numpy or cupy), times `t` as `(N, T)` or
`(1, T)`, parameters as a mapping of `(N, 1)` columns, and the names of the Jacobian
columns wanted; it returns the `(N, T)` values and a dict of columns.

The maturation forms have removable singularities (b = β - δ = 0 and δ = β). They are
evaluated through q(b, u) = (e^{bu} - 1)/b and its b-derivative, whose b → 0 limits
(u and u²/2) are taken exactly or by a series, never by dividing 0 by 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

Terms = tuple[tuple[Any, Any], ...]
"""A Jacobian column given as Σ coef·array: per-trace coefficients ((n, 1) or scalars)
times arrays that several columns may share. The solver combines the products of the
shared arrays instead of forming each column; `materialize` forms it."""


def as_terms(column: Any) -> Terms:
    return column if isinstance(column, tuple) else ((1.0, column),)


def materialize(column: Any) -> Any:
    """The column as one array."""
    if not isinstance(column, tuple):
        return column
    total = None
    for coef, array in column:
        total = array * coef if total is None else total + array * coef
    return total


_TINY_RATE = 1e-200  # |b| below this is treated as exactly 0 (b·u would underflow)


_SERIES_SWITCH = 1e-3


def _q_series(x: Any, u: Any) -> Any:
    """dq/db for |x| = |bu| < 1e-3: u²(1/2 + x/3 + x²/8 + x³/30 + x⁴/144), truncation
    below x⁵/840 < 1.2e-18 relative (the direct form loses eps/|x| there)."""
    return (u * u) * (0.5 + x * (1 / 3 + x * (1 / 8 + x * (1 / 30 + x / 144))))


def _slow_rows(xp: ModuleType, t: Any, t0: Any, b: Any) -> Any:
    """(n, 1) mask of the traces whose |b·u| stays below the series switch at all their
    times (b = 0 among them): there q and dq/db are taken from their series."""
    reach = xp.maximum(t.max(axis=1, keepdims=True) - t0, 0.0)
    return xp.abs(b) * reach < _SERIES_SWITCH


def _q_rows(xp: ModuleType, b: Any, u: Any, slow: Any) -> tuple[Any, Any]:
    """q = (e^{bu} - 1)/b and e^{bu}, from `exp` (vectorised, unlike `expm1`).

    In the `slow` traces q is its series u(1 + x/2 + x²/6 + x³/24 + x⁴/120), x = bu
    (truncation below x⁵/720 < 2e-18 relative). Elsewhere |b|·u reaches 1e-3, so the
    absolute error of exp(x) - 1, about eps, is below 2e-13 of the trace's largest q.
    """
    e = b * u
    xp.exp(e, out=e)
    q = e - 1.0
    q *= 1.0 / xp.where(xp.abs(b) < _TINY_RATE, 1.0, b)
    if xp is not np:
        x = b * u
        series = u * (1.0 + x * (0.5 + x * (1 / 6 + x * (1 / 24 + x / 120))))
        return xp.where(slow, series, q), xp.where(slow, 1.0 + b * series, e)
    rows = slow[:, 0]
    if rows.any():
        ur = u[rows]
        x = np.broadcast_to(b, slow.shape)[rows] * ur
        q[rows] = ur * (1.0 + x * (0.5 + x * (1 / 6 + x * (1 / 24 + x / 120))))
        e[rows] = 1.0 + np.broadcast_to(b, slow.shape)[rows] * q[rows]
    return q, e


def _q_b_rows(
    xp: ModuleType, b: Any, u: Any, q: Any, e: Any, slow: Any, *, divide: bool = True
) -> Any:
    """dq/db = (u e^{bu} - q)/b, with the series of `_q_b` in the `slow` traces.

    In the other traces only points just after the onset have |bu| < 1e-3; there the
    direct form keeps an absolute error below eps·u/|b|, far below the column's scale.
    With `divide=False` the other traces are left undivided by b (the caller folds
    1/b into its own per-trace factor); the `slow` rows are dq/db either way.
    `e` is e^{bu}.
    """
    d = e * u
    d -= q
    if divide:
        d *= 1.0 / xp.where(xp.abs(b) < _TINY_RATE, 1.0, b)
    if xp is not np:
        return xp.where(slow, _q_series(b * u, u), d)
    rows = slow[:, 0]
    if rows.any():
        ur = u[rows]
        d[rows] = _q_series(np.broadcast_to(b, slow.shape)[rows] * ur, ur)
    return d


def maturation(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    # Written for few passes over the (n, T) arrays: per-trace factors (1/c, 1/b, scale,
    # ktl) are folded into (n, 1) coefficients, and hc = c·h, bc = c·bracket.
    km, beta, scale = p["km"], p["beta"], p["scale"]
    t0, ktl, offset = p["t0"], p["ktl"], p["offset"]
    u = t - t0
    xp.maximum(u, 0.0, out=u)  # the bracket and all its derivatives vanish at u = 0
    b = beta - p["delta"]
    # b + km = 0 is a second removable singularity (δ = β + km); a 1e-9 relative
    # nudge keeps it finite with an error far below any measurement noise.
    c = b + km
    tiny = 1e-9 * xp.abs(km)
    c = xp.where(xp.abs(c) < tiny, xp.where(c < 0, -tiny, tiny), c)
    b = c - km
    inv_c = 1.0 / c
    slow = _slow_rows(xp, t, t0, b)
    q, e_b = _q_rows(xp, b, u, slow)
    e_k = -km * u  # e^{-km u}: absolute error eps in hc, as expm1 would give
    xp.exp(e_k, out=e_k)
    hc = q * km  # hc = c·h = km q + e^{-km u} - 1, h = bracket · e^{βu}
    hc += e_k
    hc -= 1.0
    eb = -beta * u
    xp.exp(eb, out=eb)
    bc = eb * hc  # c · bracket
    sk_c = scale * ktl * inv_c
    value = bc * sk_c
    value += scale * offset
    cols: dict[str, Any] = {}
    # Columns are returned as `Terms`: per-trace factors times arrays they share (bc).
    if "t0" in want:
        # -d/dt0 = d/du: sk·(e^{-βu} km (e^{bu} - e^{-km u})/c - β·bracket)
        h_u = e_b - e_k
        h_u *= eb
        cols["t0"] = ((-km * sk_c, h_u), (beta * sk_c, bc))
    if "ktl" in want:
        cols["ktl"] = ((scale * inv_c, bc),)
    if "offset" in want:
        cols["offset"] = scale + 0.0 * offset
    if "scale" in want:
        cols["scale"] = bc * (ktl * inv_c) + offset
    if want & {"delta", "beta"}:
        # d/dδ = -sk·e^{-βu}(km dq/db - h)/c with dq/db = (u e^{bu} - q)/b: the 1/b and
        # the other per-trace factors go into one coefficient (the series rows have no
        # 1/b); d/dβ = -d/dδ - sk·u·bracket
        h_b = _q_b_rows(xp, b, u, q, e_b, slow, divide=False)
        h_b *= eb
        over_b = 1.0 / xp.where(slow, 1.0, b)
        sk = scale * ktl
        delta = ((-sk * km * inv_c * over_b, h_b), (sk * inv_c * inv_c, bc))
        if "delta" in want:
            cols["delta"] = delta
        if "beta" in want:
            cols["beta"] = (*((-coef, array) for coef, array in delta), (-sk * inv_c, u * bc))
    if "km" in want:
        h_km = (q - u * e_k - hc * inv_c) * inv_c
        cols["km"] = (scale * ktl) * eb * h_km
    return value, cols


def maturation_blocked(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    t0, g0, gu0, km, beta, offset = (p[k] for k in ("t0", "G0", "Gu0", "km", "beta", "offset"))
    on = t > t0
    u = xp.where(on, t - t0, 0.0)
    eb = xp.where(on, xp.exp(-beta * u), 0.0)  # carries the [dt > 0] step
    ek = xp.exp(-km * u)
    s = 1.0 - ek
    value = eb * (g0 + gu0 * s) + offset
    cols: dict[str, Any] = {}
    if "t0" in want:
        cols["t0"] = eb * (beta * (g0 + gu0 * s) - gu0 * km * ek)
    if "G0" in want:
        cols["G0"] = eb
    if "Gu0" in want:
        cols["Gu0"] = eb * s
    if "km" in want:
        cols["km"] = gu0 * eb * u * ek
    if "beta" in want:
        cols["beta"] = -u * eb * (g0 + gu0 * s)
    if "offset" in want:
        cols["offset"] = 1.0 + 0.0 * offset
    return value, cols


def trivial(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    t0, ktl, beta, offset = p["t0"], p["ktl"], p["beta"], p["offset"]
    u = xp.maximum(t - t0, 0.0)
    nd = beta - p["delta"]  # -(δ - β); g = (1 - e^{-(δ-β)u})/(δ-β) = q(nd, u)
    slow = _slow_rows(xp, t, t0, nd)
    g, e = _q_rows(xp, nd, u, slow)
    eb = xp.exp(-beta * u)
    value = offset + ktl * g * eb
    cols: dict[str, Any] = {}
    if "t0" in want:
        # g' = e^{-(δ-β)u} jumps from 0 to 1 at u = 0, so the step is applied explicitly
        cols["t0"] = -ktl * eb * (xp.where(u > 0, e, 0.0) - beta * g)
    if "ktl" in want:
        cols["ktl"] = g * eb
    if want & {"delta", "beta"}:
        g_nd = _q_b_rows(xp, nd, u, g, e, slow)
        if "delta" in want:
            cols["delta"] = -ktl * eb * g_nd
        if "beta" in want:
            cols["beta"] = ktl * eb * (g_nd - u * g)
    if "offset" in want:
        cols["offset"] = 1.0 + 0.0 * offset
    return value, cols


def exponential_decay(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    amp, rate, offset = p["amplitude"], p["rate"], p["offset"]
    e = xp.exp(-rate * t)
    value = amp * e + offset
    cols: dict[str, Any] = {}
    if "amplitude" in want:
        cols["amplitude"] = e
    if "rate" in want:
        cols["rate"] = -amp * t * e
    if "offset" in want:
        cols["offset"] = 1.0 + 0.0 * offset
    return value, cols


def logistic_growth(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    cap, rate, tmid, offset = p["capacity"], p["rate"], p["t_mid"], p["offset"]
    z = rate * (t - tmid)
    s = 0.5 * (1.0 + xp.tanh(0.5 * z))  # logistic sigmoid without overflow
    value = offset + cap * s
    ds = s * (1.0 - s)
    cols: dict[str, Any] = {}
    if "capacity" in want:
        cols["capacity"] = s
    if "rate" in want:
        cols["rate"] = cap * ds * (t - tmid)
    if "t_mid" in want:
        cols["t_mid"] = -cap * ds * rate
    if "offset" in want:
        cols["offset"] = 1.0 + 0.0 * offset
    return value, cols


def hill(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    bottom, top, ec50, n = p["bottom"], p["top"], p["ec50"], p["n"]
    positive = t > 0
    lx = xp.log(xp.where(positive, t, 1.0)) - xp.log(ec50)  # ln(x/K)
    h = xp.where(positive, 0.5 * (1.0 + xp.tanh(0.5 * n * lx)), 0.0)
    value = bottom + (top - bottom) * h
    dh = h * (1.0 - h)
    cols: dict[str, Any] = {}
    if "bottom" in want:
        cols["bottom"] = 1.0 - h
    if "top" in want:
        cols["top"] = h
    if "ec50" in want:
        cols["ec50"] = -(top - bottom) * dh * n / ec50
    if "n" in want:
        cols["n"] = (top - bottom) * dh * lx
    return value, cols
