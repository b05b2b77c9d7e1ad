"""Resolve a request's parameter overrides (start values, bounds, fixed/free) against a model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import InvalidInput
from functions.fitting.models import Model, get_model


@dataclass(frozen=True)
class FitSpec:
    """A model with the start values, bounds and free mask one request fits with.

    Arrays are `(P,)` in the order of `model.names`.
    """

    model: Model
    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    free: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.names

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(n for n, f in zip(self.names, self.free, strict=True) if f)

    @property
    def constants(self) -> dict[str, float]:
        """The fixed parameters' values (the same in every row of a fit)."""
        return {
            n: float(s) for n, s, f in zip(self.names, self.start, self.free, strict=True) if not f
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "parameters": {
                n: {"start": float(s), "lower": float(lo), "upper": float(hi), "fixed": not bool(f)}
                for n, s, lo, hi, f in zip(
                    self.names, self.start, self.lower, self.upper, self.free, strict=True
                )
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitSpec:
        """The spec :meth:`as_dict` wrote, rebuilt as it is: it was checked when it was
        resolved (:func:`resolve_spec`)."""
        model = get_model(str(data["model"]))
        parameters = data["parameters"]

        def column(key: str) -> np.ndarray:
            return np.array([parameters[n][key] for n in model.names], dtype=np.float64)

        fixed = np.array([bool(parameters[n]["fixed"]) for n in model.names], dtype=bool)
        return cls(model, column("start"), column("lower"), column("upper"), ~fixed)

    def __repr__(self) -> str:
        return f"FitSpec({self.model.name!r}, free={self.free_names})"


def resolve_spec(
    model: Model | str,
    *,
    params: Mapping[str, float] | None = None,
    bounds: Mapping[str, Iterable[float]] | None = None,
    fixed: Mapping[str, bool] | Iterable[str] | None = None,
) -> FitSpec:
    """Apply overrides to a model's defaults and validate them.

    Parameters
    ----------
    model : Model or str
        The model or its registered name.
    params : mapping of name to float, optional
        Start values (for fixed parameters: their value).
    bounds : mapping of name to (lower, upper), optional
    fixed : mapping of name to bool, or iterable of names, optional
        A mapping overrides the model's fixed flags one by one; an iterable of names is
        the complete set of fixed parameters.

    Returns
    -------
    FitSpec

    Raises
    ------
    InvalidInput
        Unknown model or parameter names, non-finite values, lower > start or
        start > upper, or no free parameter left.
    """
    m = get_model(model) if isinstance(model, str) else model
    names = m.names
    start = np.array([p.default for p in m.parameters], dtype=np.float64)
    lower = np.array([p.lower for p in m.parameters], dtype=np.float64)
    upper = np.array([p.upper for p in m.parameters], dtype=np.float64)
    free = np.array([not p.fixed for p in m.parameters], dtype=bool)

    def index(name: str, what: str) -> int:
        if name not in names:
            raise InvalidInput(
                f"{what}: unknown parameter {name!r} for model {m.name!r}; "
                f"parameters are {', '.join(names)}"
            )
        return names.index(name)

    for name, value in (params or {}).items():
        start[index(name, "model_params")] = _finite(value, f"model_params[{name!r}]")
    for name, pair in (bounds or {}).items():
        i = index(name, "model_bounds")
        values = list(pair)
        if len(values) != 2:
            raise InvalidInput(f"model_bounds[{name!r}] must be [lower, upper], got {values!r}")
        lower[i] = _finite(values[0], f"model_bounds[{name!r}] lower")
        upper[i] = _finite(values[1], f"model_bounds[{name!r}] upper")
    if isinstance(fixed, Mapping):
        for name, flag in fixed.items():
            free[index(name, "fixed")] = not bool(flag)
    elif fixed is not None:
        fixed_names = [fixed] if isinstance(fixed, str) else list(fixed)
        free[:] = True
        for name in fixed_names:
            free[index(name, "fixed")] = False

    for i, name in enumerate(names):
        if not lower[i] <= upper[i]:
            raise InvalidInput(f"bounds of {name!r}: lower {lower[i]:g} > upper {upper[i]:g}")
        if free[i] and not lower[i] <= start[i] <= upper[i]:
            raise InvalidInput(
                f"start of {name!r} ({start[i]:g}) is outside its bounds "
                f"[{lower[i]:g}, {upper[i]:g}]"
            )
    if not free.any():
        raise InvalidInput(f"model {m.name!r}: every parameter is fixed; nothing to fit")
    return FitSpec(m, start, lower, upper, free)


def _finite(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise InvalidInput(f"{what} must be finite, got {value!r}")
    return out
