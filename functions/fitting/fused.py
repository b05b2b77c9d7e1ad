"""Fused GPU kernels: a model's cost, JᵀJ and Jᵀr in one pass over the data.

The array path (`kernels` + `solver._normal`) makes some twenty passes over `(n, T)`
arrays per evaluation; on a GPU each pass is a kernel launch and a round trip through
memory. Here one CUDA warp takes one trace: its lanes walk the time points, evaluate
the model and its derivatives in registers, and reduce the sums of the normal
equations with warp shuffles. Nothing of size `(n, T)` is written.

The per-point arithmetic is `kernels.maturation`'s, statement for statement (the same
removable-singularity handling: the c = b + km nudge, the series rows where |b·u| stays
below 1e-3), so CPU and GPU differ only in summation order; `tests/functions/fitting/
test_gpu.py` holds them to the same costs within 1e-6 relative.

Only models listed in `_SOURCES` have a fused kernel; the others run the array path on
either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from functions.fitting.spec import FitSpec

Fused = Callable[[Any, Any, Any, Any], tuple[Any, Any, Any]]
"""(t (n|1, T), y (n, T), w (n, T) or None when no point is missing, p (n, P)) →
(cost ½·SS_res (n,), JᵀJ (n, k, k), Jᵀr (n, k)) over the free parameters."""

WARPS_PER_BLOCK = 8

# Per-trace set-up and per-point body of the maturation model. Parameter order is the
# model's: t0, ktl, delta, offset, km, beta, scale. `d[i]` is ∂value/∂(parameter i).
_MATURATION = r"""
    const double t0 = pr[0], ktl = pr[1], delta = pr[2], offset = pr[3];
    const double km = pr[4], beta = pr[5], scale = pr[6];
    double b = beta - delta;
    double c = b + km;
    const double tiny = 1e-9 * fabs(km);
    if (fabs(c) < tiny) c = (c < 0.0) ? -tiny : tiny;
    b = c - km;
    const double inv_c = 1.0 / c;
    const bool slow = fabs(b) * fmax(tmax - t0, 0.0) < 1e-3;
    const double inv_b = 1.0 / (fabs(b) < 1e-200 ? 1.0 : b);
    const double over_b = slow ? 1.0 : 1.0 / b;
    const double sk = scale * ktl, sk_c = sk * inv_c;
    const double c_t0_hu = -km * sk_c, c_t0_bc = beta * sk_c, c_ktl = scale * inv_c;
    const double c_d_hb = -sk * km * inv_c * over_b, c_d_bc = sk * inv_c * inv_c;
    const double c_b_ubc = -sk * inv_c, base = scale * offset, ktl_c = ktl * inv_c;
#define POINT(tj)                                                                   \
    const double u = fmax((tj) - t0, 0.0);                                          \
    double q, e_b, h_b;                                                             \
    if (slow) {                                                                     \
        const double x = b * u;                                                     \
        q = u * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x / 120))));       \
        e_b = 1.0 + b * q;                                                          \
        h_b = (u * u) * (0.5 + x * (1.0 / 3 + x * (1.0 / 8 + x * (1.0 / 30 + x / 144)))); \
    } else {                                                                        \
        e_b = exp(b * u);                                                           \
        q = (e_b - 1.0) * inv_b;                                                    \
        h_b = e_b * u - q;                                                          \
    }                                                                               \
    const double e_k = exp(-km * u);                                                \
    const double hc = q * km + e_k - 1.0;                                           \
    const double eb = exp(-beta * u);                                               \
    const double bc = eb * hc;                                                      \
    const double value = bc * sk_c + base;                                          \
    d[0] = c_t0_hu * ((e_b - e_k) * eb) + c_t0_bc * bc;                            \
    d[1] = c_ktl * bc;                                                              \
    d[2] = c_d_hb * (h_b * eb) + c_d_bc * bc;                                       \
    d[3] = scale;                                                                   \
    d[4] = sk * eb * ((q - u * e_k - hc * inv_c) * inv_c);                          \
    d[5] = -d[2] + c_b_ubc * (u * bc);                                              \
    d[6] = bc * ktl_c + offset;
"""

_SOURCES = {"maturation": (_MATURATION, 7)}

_TEMPLATE = r"""
#define K {k}
#define NP {np}
extern "C" __global__ void normal_equations(
    const double* __restrict__ t, const double* __restrict__ y,
    const double* __restrict__ w, const double* __restrict__ p,
    const long long n, const int T, const long long t_stride, const int weighted,
    double* __restrict__ cost_out, double* __restrict__ A_out, double* __restrict__ g_out)
{{
    const int F[K] = {{{free}}};
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;  // a whole warp leaves together
    const double* tr = t + t_stride * row;
    const double* yr = y + row * T;
    const double* wr = w + row * T;
    const double* pr = p + row * NP;
    // The row's latest time (masked points included, as the array path takes it).
    double tmax = -1.7976931348623157e308;
    for (int j = lane; j < T; j += 32) tmax = fmax(tmax, tr[j]);
    for (int o = 16; o > 0; o >>= 1) tmax = fmax(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
{setup}
    double ss = 0.0, g[K], A[K * (K + 1) / 2], d[NP];
#pragma unroll
    for (int i = 0; i < K; ++i) g[i] = 0.0;
#pragma unroll
    for (int i = 0; i < K * (K + 1) / 2; ++i) A[i] = 0.0;
    for (int j = lane; j < T; j += 32) {{
        POINT(tr[j])
        double r = yr[j] - value;
        if (weighted) {{
            const double wj = wr[j];
            r *= wj;
#pragma unroll
            for (int i = 0; i < K; ++i) d[F[i]] *= wj;
        }}
        ss += r * r;
        int a = 0;
#pragma unroll
        for (int i = 0; i < K; ++i) {{
            g[i] += d[F[i]] * r;
#pragma unroll
            for (int m = 0; m <= i; ++m) A[a++] += d[F[i]] * d[F[m]];
        }}
    }}
    for (int o = 16; o > 0; o >>= 1) {{
        ss += __shfl_down_sync(0xffffffffu, ss, o);
#pragma unroll
        for (int i = 0; i < K; ++i) g[i] += __shfl_down_sync(0xffffffffu, g[i], o);
#pragma unroll
        for (int i = 0; i < K * (K + 1) / 2; ++i) A[i] += __shfl_down_sync(0xffffffffu, A[i], o);
    }}
    if (lane == 0) {{
        cost_out[row] = 0.5 * ss;
        int a = 0;
#pragma unroll
        for (int i = 0; i < K; ++i) {{
            g_out[row * K + i] = g[i];
#pragma unroll
            for (int m = 0; m <= i; ++m, ++a) {{
                A_out[(row * K + i) * K + m] = A[a];
                A_out[(row * K + m) * K + i] = A[a];
            }}
        }}
    }}
}}
"""


def fused_normal_equations(xp: ModuleType, spec: FitSpec) -> Fused | None:
    """The fused kernel for `spec`'s model and free parameters on cupy, else None."""
    if xp is np or spec.model.name not in _SOURCES or not spec.free.any():
        return None
    kernel = _compile(spec.model.name, tuple(int(i) for i in np.flatnonzero(spec.free)))
    k = int(spec.free.sum())

    def run(t: Any, y: Any, w: Any, p: Any) -> tuple[Any, Any, Any]:
        n, T = y.shape
        cost, A, g = xp.empty(n), xp.empty((n, k, k)), xp.empty((n, k))
        if n == 0:
            return cost, A, g
        t, y, p = (xp.ascontiguousarray(a, dtype=xp.float64) for a in (t, y, p))
        weighted = w is not None
        w = xp.ascontiguousarray(w, dtype=xp.float64) if weighted else y  # y: never read
        t_stride = 0 if t.shape[0] == 1 else T
        args = (t, y, w, p, np.int64(n), np.int32(T), np.int64(t_stride), np.int32(weighted))
        blocks = (n + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK
        kernel((blocks,), (32 * WARPS_PER_BLOCK,), (*args, cost, A, g))
        return cost, A, g

    return run


@cache
def _compile(model: str, free: tuple[int, ...]) -> Any:
    import cupy

    return cupy.RawKernel(source(model, free), "normal_equations")


def source(model: str, free: tuple[int, ...]) -> str:
    """The CUDA source for `model` with these free parameter indices (for inspection)."""
    body, n_params = _SOURCES[model]
    return _TEMPLATE.format(k=len(free), np=n_params, free=", ".join(map(str, free)), setup=body)
