"""Kinetic models for single-cell traces: descriptions, vectorised values, analytic Jacobians.

Every model is a `Model`: its parameters (default, bounds, unit, fixed or fitted by
default) and one kernel that evaluates the model and the requested Jacobian columns for
many traces at once. Kernels are written against an array module `xp` (numpy or cupy),
take parameters as `(N, 1)` columns and times as `(N, T)` or `(1, T)`, and return
`(N, T)` arrays, so the same code runs on the CPU and the GPU.

The maturation forms have removable singularities (b = β - δ = 0 and δ = β). They are
evaluated through q(b, u) = (e^{bu} - 1)/b and its b-derivative, whose b → 0 limits
(u and u²/2) are taken exactly or by a series, never by dividing 0 by 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from common.errors import InvalidInput

StartGrid = Literal["linear", "log", "time", "rate", "dose", "frames"]
Kernel = Callable[[ModuleType, Any, Mapping[str, Any], frozenset[str]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    `linear` marks parameters the model is linear in (used to project starting points);
    `grid` and `n_starts` describe the deterministic multi-start candidates: "linear"
    or "log" spacing inside the bounds, "time" over each trace's time span, "rate" over
    rates 0.3/span ... 300/span, "dose" log-spaced over the positive x range, "frames"
    mid-points between consecutive sample times (one start per smooth piece of a
    model with a step at that parameter).
    """

    name: str
    default: float
    lower: float
    upper: float
    unit: str = ""
    fixed: bool = False
    linear: bool = False
    grid: StartGrid | None = None
    n_starts: int = 0
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "default": self.default, "lower": self.lower,
            "upper": self.upper, "unit": self.unit, "fixed": self.fixed,
            "description": self.description,
        }


@dataclass(frozen=True)
class Model:
    """A registered model: metadata plus a vectorised kernel (value and Jacobian)."""

    name: str
    description: str
    equation: str
    parameters: tuple[Parameter, ...]
    kernel: Kernel
    lm_starts: int = 1  # solver runs per trace from the best start candidates

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready description served by `GET /api/v1/analysis/models`."""
        return {
            "name": self.name, "description": self.description, "equation": self.equation,
            "parameters": [p.as_dict() for p in self.parameters],
        }

    def evaluate(
        self, xp: ModuleType, t: Any, params: Any, want: frozenset[str] = frozenset()
    ) -> tuple[Any, dict[str, Any]]:
        """Backend-level call: `t` (N|1, T), `params` (N, P) → value (N, T) and the
        Jacobian columns named in `want`, each (N, T) or broadcastable to it."""
        cols = {name: params[:, i : i + 1] for i, name in enumerate(self.names)}
        return self.kernel(xp, t, cols, want)

    def eval(self, t: Any, params: Any) -> Any:
        """Model values.

        Parameters
        ----------
        t : (T,) or (N, T) array
            Times (or doses for `hill`).
        params : (P,) or (N, P) array
            Parameter values in the order of `names`.

        Returns
        -------
        (N, T) array
        """
        xp, t2, p2 = self._prepare(t, params)
        value, _ = self.evaluate(xp, t2, p2)
        return xp.broadcast_to(value, (p2.shape[0], t2.shape[1])).copy()

    def jacobian(self, t: Any, params: Any) -> Any:
        """Analytic Jacobian d value / d params, shape (N, T, P)."""
        xp, t2, p2 = self._prepare(t, params)
        _, cols = self.evaluate(xp, t2, p2, frozenset(self.names))
        shape = (p2.shape[0], t2.shape[1])
        return xp.stack([xp.broadcast_to(cols[n], shape) for n in self.names], axis=-1)

    def _prepare(self, t: Any, params: Any) -> tuple[ModuleType, Any, Any]:
        xp = array_module(t)
        t2 = xp.atleast_2d(xp.asarray(t, dtype=xp.float64))
        p2 = xp.atleast_2d(xp.asarray(params, dtype=xp.float64))
        if t2.ndim != 2 or p2.ndim != 2 or p2.shape[1] != len(self.parameters):
            raise ValueError(
                f"{self.name}: expected t (T,) or (N, T) and params (N, {len(self.parameters)}),"
                f" got t {tuple(t2.shape)} and params {tuple(p2.shape)}"
            )
        if t2.shape[0] not in (1, p2.shape[0]):
            raise ValueError(f"t has {t2.shape[0]} rows but params has {p2.shape[0]}")
        return xp, t2, p2


def array_module(a: Any) -> ModuleType:
    """numpy, or cupy for cupy arrays (without importing cupy otherwise)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy  # type: ignore[no-any-return]
    return np


# --- stable building blocks -----------------------------------------------------------

_TINY_RATE = 1e-200  # |b| below this is treated as exactly 0 (b·u would underflow)


def _q(xp: ModuleType, b: Any, u: Any) -> tuple[Any, Any, Any]:
    """q = (e^{bu} - 1)/b with its b → 0 limit u; also returns x = bu and e^{bu} - 1.

    `b` is a per-trace column (n, 1), so the b = 0 branch is chosen per trace.
    """
    x = b * u
    em = xp.expm1(x)
    zero = xp.abs(b) < _TINY_RATE
    q = em * (1.0 / xp.where(zero, 1.0, b))
    if xp is not np or zero.any():
        q += zero * u
    return q, x, em


_SERIES_SWITCH = 1e-3


def _q_series(x: Any, u: Any) -> Any:
    return (u * u) * (0.5 + x * (1 / 3 + x * (1 / 8 + x * (1 / 30 + x / 144))))


def _q_b(xp: ModuleType, b: Any, u: Any, q: Any, x: Any, em: Any) -> Any:
    """dq/db = (u e^{bu} - q)/b, and u²(1/2 + x/3 + x²/8 + x³/30 + x⁴/144) for |x| < 1e-3.

    The series truncation error is below x⁵/840 < 1.2e-18 relative; the direct form loses
    at most eps/|x| ≈ 2e-13 relative at the switch. On the CPU only the few points near
    x = 0 are patched with the series; on the GPU a select is cheaper.
    """
    zero = xp.abs(b) < _TINY_RATE
    direct = u * (em + 1.0)
    direct -= q
    direct *= 1.0 / xp.where(zero, 1.0, b)
    small = xp.abs(x) < _SERIES_SWITCH
    if xp is not np:
        return xp.where(small, _q_series(x, u), direct)
    if small.any():
        xu = np.broadcast_arrays(x, u)
        direct[small] = _q_series(xu[0][small], xu[1][small])
    return direct


# --- kernels ---------------------------------------------------------------------------


def _maturation(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
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
    q, x, em_b = _q(xp, b, u)
    em_k = xp.expm1(-km * u)
    h = q * (km * inv_c)  # h = bracket · e^{βu} = (km q + e^{-km u} - 1)/c
    h += em_k * inv_c
    eb = xp.exp(-beta * u)
    bracket = eb * h
    sk = scale * ktl
    value = bracket * sk
    value += scale * offset
    cols: dict[str, Any] = {}
    if "t0" in want:
        h_u = em_b - em_k  # dh/du = km (e^{bu} - e^{-km u})/c
        h_u *= eb
        h_u *= km * inv_c
        h_u -= beta * bracket
        h_u *= -sk
        cols["t0"] = h_u
    if "ktl" in want:
        cols["ktl"] = scale * bracket
    if "offset" in want:
        cols["offset"] = scale + 0.0 * offset
    if "scale" in want:
        cols["scale"] = ktl * bracket + offset
    if want & {"delta", "beta"}:
        h_b = _q_b(xp, b, u, q, x, em_b)  # dh/db = (km dq/db - h)/c
        h_b *= km
        h_b -= h
        h_b *= eb
        h_b *= inv_c  # now e^{-βu} dh/db
        if "delta" in want:
            cols["delta"] = h_b * -sk
        if "beta" in want:
            cols["beta"] = sk * (h_b - u * bracket)
    if "km" in want:
        h_km = (q - u * (em_k + 1.0) - h) * inv_c
        cols["km"] = sk * eb * h_km
    return value, cols


def _maturation_blocked(
    xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]
) -> Any:
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


def _trivial(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
    t0, ktl, beta, offset = p["t0"], p["ktl"], p["beta"], p["offset"]
    u = xp.maximum(t - t0, 0.0)
    nd = beta - p["delta"]  # -(δ - β); g = (1 - e^{-(δ-β)u})/(δ-β) = q(nd, u)
    g, x, em = _q(xp, nd, u)
    eb = xp.exp(-beta * u)
    value = offset + ktl * g * eb
    cols: dict[str, Any] = {}
    if "t0" in want:
        # g' = e^{-(δ-β)u} jumps from 0 to 1 at u = 0, so the step is applied explicitly
        cols["t0"] = -ktl * eb * (xp.where(u > 0, em + 1.0, 0.0) - beta * g)
    if "ktl" in want:
        cols["ktl"] = g * eb
    if want & {"delta", "beta"}:
        g_nd = _q_b(xp, nd, u, g, x, em)
        if "delta" in want:
            cols["delta"] = -ktl * eb * g_nd
        if "beta" in want:
            cols["beta"] = ktl * eb * (g_nd - u * g)
    if "offset" in want:
        cols["offset"] = 1.0 + 0.0 * offset
    return value, cols


def _exponential_decay(
    xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]
) -> Any:
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


def _logistic_growth(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
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


def _hill(xp: ModuleType, t: Any, p: Mapping[str, Any], want: frozenset[str]) -> Any:
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


# --- registry --------------------------------------------------------------------------

_BIG = 1e6
MODELS: dict[str, Model] = {}


def _register(model: Model) -> None:
    MODELS[model.name] = model


_register(Model(
    name="maturation",
    description="Fluorescent-protein expression after mRNA transfection with a maturation "
    "step: translation from decaying mRNA (β), maturation (km), protein degradation (δ).",
    equation="y = scale·(ktl·[e^{-(β+km)dt}/(b+km) - e^{-β·dt}/b + km·e^{-δ·dt}/(b·(b+km))]"
    "·[dt>0] + offset), dt = t - t0, b = β - δ",
    parameters=(
        Parameter("t0", 0.0, -1.0, 1.0, "h", grid="linear", n_starts=2,
                  description="onset of expression"),
        Parameter("ktl", 1e3, 1.0, 5e8, "a.u./h", linear=True, description="translation rate"),
        Parameter("delta", 1e-2, 1e-5, 11.0, "1/h", grid="rate", n_starts=4,
                  description="protein degradation rate"),
        Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True, description="background"),
        Parameter("km", 1.28, 1e-5, 30.0, "1/h", fixed=True, description="maturation rate"),
        Parameter("beta", 5.22e-3, 1e-5, 10.0, "1/h", fixed=True,
                  description="mRNA degradation rate"),
        Parameter("scale", 1.0, 1e-6, _BIG, "", fixed=True, description="signal scale"),
    ),
    kernel=_maturation,
))
_register(Model(
    name="maturation_blocked",
    description="Maturation of already-translated protein after translation is blocked: "
    "mature (G0) and unmaturated (Gu0) pools at t0.",
    equation="y = [dt>0]·(G0·e^{-β·dt} + Gu0·(e^{-β·dt} - e^{-(β+km)·dt})) + offset",
    parameters=(
        Parameter("t0", 0.0, 0.0, 1.0, "h", grid="frames", n_starts=6),
        Parameter("G0", 100.0, 0.0, _BIG, "a.u.", linear=True),
        Parameter("Gu0", 100.0, 0.0, _BIG, "a.u.", linear=True),
        Parameter("km", 1.28, 1e-5, 30.0, "1/h", grid="rate", n_starts=2),
        Parameter("beta", 5.22e-3, 1e-5, 10.0, "1/h", grid="rate", n_starts=2),
        Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True),
    ),
    kernel=_maturation_blocked,
    lm_starts=6,  # the [dt > 0] step makes the cost jump at every sample time
))
_register(Model(
    name="trivial",
    description="Two-stage expression without maturation: translation from decaying mRNA "
    "(β) and protein degradation (δ).",
    equation="y = offset + [dt>0]·(ktl/(δ-β))·(1 - e^{-(δ-β)dt})·e^{-β·dt}",
    parameters=(
        Parameter("t0", 2.0, 0.0, 30.0, "h", grid="time", n_starts=7),
        Parameter("ktl", 20.0, 1.0, _BIG, "a.u./h", linear=True),
        Parameter("delta", 0.07, 1e-5, 10.1, "1/h"),
        Parameter("beta", 0.0436275356035, 1e-5, 10.0, "1/h"),
        Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True),
    ),
    kernel=_trivial,
))
_register(Model(
    name="exponential_decay",
    description="Single exponential decay to a plateau (bleaching, degradation chase).",
    equation="y = amplitude·e^{-rate·t} + offset",
    parameters=(
        Parameter("amplitude", 1.0, -1e12, 1e12, "a.u.", linear=True),
        Parameter("rate", 0.1, 1e-9, 1e6, "1/time", grid="rate", n_starts=5),
        Parameter("offset", 0.0, -1e12, 1e12, "a.u.", linear=True),
    ),
    kernel=_exponential_decay,
))
_register(Model(
    name="logistic_growth",
    description="Logistic (sigmoidal) growth to a capacity above a baseline.",
    equation="y = offset + capacity/(1 + e^{-rate·(t - t_mid)})",
    parameters=(
        Parameter("capacity", 1.0, -1e12, 1e12, "a.u.", linear=True),
        Parameter("rate", 1.0, 1e-9, 1e6, "1/time", grid="rate", n_starts=3),
        Parameter("t_mid", 0.0, -1e9, 1e9, "time", grid="time", n_starts=5),
        Parameter("offset", 0.0, -1e12, 1e12, "a.u.", linear=True),
    ),
    kernel=_logistic_growth,
))
_register(Model(
    name="hill",
    description="Hill dose-response curve (x = dose or concentration, x ≥ 0).",
    equation="y = bottom + (top - bottom)·x^n/(ec50^n + x^n)",
    parameters=(
        Parameter("bottom", 0.0, -1e12, 1e12, "a.u.", linear=True),
        Parameter("top", 1.0, -1e12, 1e12, "a.u.", linear=True),
        Parameter("ec50", 1.0, 1e-12, 1e12, "dose", grid="dose", n_starts=5),
        Parameter("n", 1.0, 0.05, 20.0, "", grid="linear", n_starts=0),
    ),
    kernel=_hill,
))


def get_model(name: str) -> Model:
    """The registered model `name`; raises `InvalidInput` listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise InvalidInput(f"unknown model {name!r}; known models: {known}") from None


def list_models() -> list[dict[str, Any]]:
    """Descriptions of every registered model, for the models endpoint."""
    return [MODELS[name].as_dict() for name in sorted(MODELS)]
