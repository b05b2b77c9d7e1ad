"""Kinetic models for single-cell traces: descriptions, vectorised values, analytic Jacobians.

Every model is a `Model`: its parameters (default, bounds, unit, fixed or fitted by
default) and one kernel that evaluates the model and the requested Jacobian columns for
many traces at once. Kernels are written against an array module `xp` (numpy or cupy),
take parameters as `(N, 1)` columns and times as `(N, T)` or `(1, T)`, and return
`(N, T)` arrays, so the same code runs on the CPU and the GPU.

The kernels themselves live in `functions.fitting.kernels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from common.errors import InvalidInput
from functions.fitting import kernels

StartGrid = Literal["linear", "log", "time", "onset", "rate", "dose", "frames"]
BoundOk = Literal["lower"] | None
Kernel = Callable[[ModuleType, Any, Mapping[str, Any], frozenset[str]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    `linear` marks parameters the model is linear in (used to project starting points);
    `grid` and `n_starts` describe the deterministic multi-start candidates: "linear"
    or "log" spacing inside the bounds, "time" over each trace's time span ("onset": the
    same, denser early, where expression mostly starts), "rate" over
    rates 0.3/span ... 300/span, "dose" log-spaced over the positive x range, "frames"
    mid-points between consecutive sample times (one start per smooth piece of a
    model with a step at that parameter: every piece inside the bounds when traces
    share a time axis, else each trace's `n_starts` pieces with the largest jumps).
    `kink` marks an onset where the model's slope jumps: a fit ending next to a sample
    time is retried from the sample's other side.

    `window` makes a time-like parameter (an onset, a mid-point) take its default start
    and bounds from the time axis of the data instead of `default`, `lower`, `upper`:
    `(lower, start, upper)` as fractions of the time span, counted from the first time
    point (see `spec.time_window`). `lower` and `upper` then stay as outer limits only.

    `bound_ok` says which bound is a legitimate answer: "lower" for a rate or an amount
    whose floor means "none on this time scale" (a protein that does not degrade). A fit
    that ends on any other bound found its best point outside the search window, so its
    other parameters are distorted too, and its quality is not "good" (see
    `results.quality_band`). Either way the parameter is reported in `at_bound`.
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
    kink: bool = False
    window: tuple[float, float, float] | None = None
    bound_ok: BoundOk = None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "default": self.default,
            "lower": self.lower,
            "upper": self.upper,
            "unit": self.unit,
            "fixed": self.fixed,
            "description": self.full_description,
            "window": list(self.window) if self.window else None,
            "bound_ok": self.bound_ok,
        }

    @property
    def full_description(self) -> str:
        """The description, with where the default bounds come from when they are not
        constants, and which bound is an answer rather than a search limit."""
        notes = [self.description] if self.description else []
        if self.window is not None:
            lo, start, hi = self.window

            def at(f: float) -> str:
                if f == 0:
                    return "first time"
                if f == 1:
                    return "last time"
                sign = "+" if f > 0 else "-"
                return f"first time {sign} {abs(f) * 100:g} % of the time span"

            notes.append(
                f"default bounds from the data's time axis: [{at(lo)}, {at(hi)}], start at "
                f"{at(start)} (rounded outwards; listed bounds are outer limits)"
            )
        if self.bound_ok == "lower":
            notes.append(
                "ending at its lower bound is an answer (none, or too little to measure): "
                "reported in at_bound, the fit may still be good"
            )
        return "; ".join(notes)


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
            "name": self.name,
            "description": self.description,
            "equation": self.equation,
            "parameters": [p.as_dict() for p in self.parameters],
        }

    def evaluate(
        self,
        xp: ModuleType,
        t: Any,
        params: Any,
        want: frozenset[str] = frozenset(),
        constants: Mapping[str, float] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Backend-level call: `t` (N|1, T), `params` (N, P) → value (N, T) and the
        Jacobian columns named in `want`, each (N, T) or broadcastable to it.

        Parameters named in `constants` (fixed ones, equal in every row) are passed to
        the kernel as plain floats: scaling an array by a scalar is a flat loop, about
        twice as fast as broadcasting an (N, 1) column over it.
        """
        value, cols = self.evaluate_terms(xp, t, params, want, constants)
        return value, {name: kernels.materialize(col) for name, col in cols.items()}

    def evaluate_terms(
        self,
        xp: ModuleType,
        t: Any,
        params: Any,
        want: frozenset[str] = frozenset(),
        constants: Mapping[str, float] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """`evaluate`, with columns as the kernel gives them: arrays or `kernels.Terms`."""
        constants = constants or {}
        cols = {
            name: constants[name] if name in constants else params[:, i : i + 1]
            for i, name in enumerate(self.names)
        }
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


# --- registry --------------------------------------------------------------------------

_BIG = 1e6
MODELS: dict[str, Model] = {}


def _register(model: Model) -> None:
    MODELS[model.name] = model


# Time-like parameters (onsets, mid-points) take their bounds from the data's time axis
# (`Parameter.window`); these outer limits only keep them finite.
#
# Bounds that are answers (`bound_ok="lower"`: a fit ending there is reported in
# at_bound and may still be good): maturation δ, β; maturation_blocked G0, Gu0, β;
# trivial δ, β; exponential_decay rate. Every other bound (onsets, mid-points,
# translation rates, amplitudes, offsets, km, logistic rate, Hill parameters) is a
# search limit: a fit that ends on it is at best "fair".
_TIME_LIMIT = 1e6
# Onsets may precede the first frame by a twentieth of the time span (expression that
# began before imaging: 1 h on a 10-hour time-lapse, 2 h on 30 h, once rounded) and
# follow it up to the last frame. Further back the onset hardly shows in the data: it
# trades off against the offset, and a wider window only lets such fits wander.
_ONSET = (-0.05, 0.0, 1.0)

_register(
    Model(
        name="maturation",
        description="Fluorescent-protein expression after mRNA transfection with a maturation "
        "step: translation from decaying mRNA (β), maturation (km), protein degradation (δ).",
        equation="y = scale·(ktl·[e^{-(β+km)dt}/(b+km) - e^{-β·dt}/b + km·e^{-δ·dt}/(b·(b+km))]"
        "·[dt>0] + offset), dt = t - t0, b = β - δ",
        parameters=(
            Parameter(
                "t0",
                0.0,
                -_TIME_LIMIT,
                _TIME_LIMIT,
                "h",
                grid="onset",
                n_starts=8,
                window=_ONSET,
                description="onset of expression",
            ),
            Parameter("ktl", 1e3, 1.0, 5e8, "a.u./h", linear=True, description="translation rate"),
            Parameter(
                "delta",
                1e-2,
                1e-5,
                11.0,
                "1/h",
                grid="rate",
                n_starts=8,
                bound_ok="lower",
                description="protein degradation rate",
            ),
            Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True, description="background"),
            Parameter("km", 1.28, 1e-5, 30.0, "1/h", fixed=True, description="maturation rate"),
            Parameter(
                "beta",
                5.22e-3,
                1e-5,
                10.0,
                "1/h",
                fixed=True,
                bound_ok="lower",
                description="mRNA degradation rate",
            ),
            Parameter("scale", 1.0, 1e-6, _BIG, "", fixed=True, description="signal scale"),
        ),
        kernel=kernels.maturation,
    )
)
_register(
    Model(
        name="maturation_blocked",
        description="Maturation of already-translated protein after translation is blocked: "
        "mature (G0) and unmaturated (Gu0) pools at t0.",
        equation="y = [dt>0]·(G0·e^{-β·dt} + Gu0·(e^{-β·dt} - e^{-(β+km)·dt})) + offset",
        parameters=(
            Parameter(
                "t0",
                0.0,
                -_TIME_LIMIT,
                _TIME_LIMIT,
                "h",
                grid="frames",
                n_starts=6,
                window=(0.0, 0.0, 1.0),
                description="time translation was blocked",
            ),
            Parameter("G0", 100.0, 0.0, _BIG, "a.u.", linear=True, bound_ok="lower"),
            Parameter("Gu0", 100.0, 0.0, _BIG, "a.u.", linear=True, bound_ok="lower"),
            Parameter("km", 1.28, 1e-5, 30.0, "1/h", grid="rate", n_starts=3),
            Parameter(
                "beta", 5.22e-3, 1e-5, 10.0, "1/h", grid="rate", n_starts=2, bound_ok="lower"
            ),
            Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True),
        ),
        kernel=kernels.maturation_blocked,
        lm_starts=6,  # the [dt > 0] step makes the cost jump at every sample time
    )
)
_register(
    Model(
        name="trivial",
        description="Two-stage expression without maturation: translation from decaying mRNA "
        "(β) and protein degradation (δ).",
        equation="y = offset + [dt>0]·(ktl/(δ-β))·(1 - e^{-(δ-β)dt})·e^{-β·dt}",
        parameters=(
            Parameter(
                "t0",
                0.0,
                -_TIME_LIMIT,
                _TIME_LIMIT,
                "h",
                grid="time",
                n_starts=7,
                kink=True,
                # a start on the first frame sits on the kink of every trace's cost
                window=(-0.05, 0.05, 1.0),
                description="onset of expression",
            ),
            Parameter("ktl", 20.0, 1.0, _BIG, "a.u./h", linear=True),
            Parameter("delta", 0.07, 1e-5, 10.1, "1/h", grid="rate", n_starts=3, bound_ok="lower"),
            Parameter("beta", 0.0436275356035, 1e-5, 10.0, "1/h", bound_ok="lower"),
            Parameter("offset", 0.0, -_BIG, _BIG, "a.u.", linear=True),
        ),
        kernel=kernels.trivial,
    )
)
_register(
    Model(
        name="exponential_decay",
        description="Single exponential decay to a plateau (bleaching, degradation chase).",
        equation="y = amplitude·e^{-rate·t} + offset",
        parameters=(
            Parameter("amplitude", 1.0, -1e12, 1e12, "a.u.", linear=True),
            Parameter("rate", 0.1, 1e-9, 1e6, "1/time", grid="rate", n_starts=5, bound_ok="lower"),
            Parameter("offset", 0.0, -1e12, 1e12, "a.u.", linear=True),
        ),
        kernel=kernels.exponential_decay,
    )
)
_register(
    Model(
        name="logistic_growth",
        description="Logistic (sigmoidal) growth to a capacity above a baseline.",
        equation="y = offset + capacity/(1 + e^{-rate·(t - t_mid)})",
        parameters=(
            Parameter("capacity", 1.0, -1e12, 1e12, "a.u.", linear=True),
            Parameter("rate", 1.0, 1e-9, 1e6, "1/time", grid="rate", n_starts=3),
            Parameter(
                "t_mid",
                0.0,
                -1e9,
                1e9,
                "time",
                grid="time",
                n_starts=5,
                # a mid-point beyond the data shows as exponential growth or saturation
                window=(-0.5, 0.5, 1.5),
                description="time of half capacity",
            ),
            Parameter("offset", 0.0, -1e12, 1e12, "a.u.", linear=True),
        ),
        kernel=kernels.logistic_growth,
    )
)
_register(
    Model(
        name="hill",
        description="Hill dose-response curve (x = dose or concentration, x ≥ 0).",
        equation="y = bottom + (top - bottom)·x^n/(ec50^n + x^n)",
        parameters=(
            Parameter("bottom", 0.0, -1e12, 1e12, "a.u.", linear=True),
            Parameter("top", 1.0, -1e12, 1e12, "a.u.", linear=True),
            Parameter("ec50", 1.0, 1e-12, 1e12, "dose", grid="dose", n_starts=5),
            Parameter("n", 1.0, 0.05, 20.0, "", grid="linear", n_starts=0),
        ),
        kernel=kernels.hill,
    )
)


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
