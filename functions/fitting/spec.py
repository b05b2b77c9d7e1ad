"""Resolve a request's parameter overrides (start values, bounds, fixed/free) against a model,
and the default bounds of time-like parameters against the data's time axes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from common.errors import InvalidInput
from functions.fitting.models import Model, get_model


@dataclass(frozen=True)
class FitSpec:
    """A model with the start values, bounds and free mask one request fits with.

    Arrays are `(P,)` in the order of `model.names`. `window` (P, 3) holds, for the
    time-like parameters whose bounds the request left to the data, the fractions of the
    time span their bounds and start come from (`Parameter.window`; NaN rows for the
    others). Such a spec is resolved against each trace's time axis (`on_axes`) before
    solving; until then its `start`, `lower` and `upper` hold the model's outer limits.
    `start_given` marks start values the request set (they are kept, and a window is
    widened to contain them).
    """

    model: Model
    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    free: np.ndarray
    window: np.ndarray | None = None
    start_given: np.ndarray | None = None

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

    @property
    def windowed(self) -> np.ndarray:
        """(P,) bool: parameters whose bounds still come from the time axis."""
        if self.window is None:
            return np.zeros(len(self.names), dtype=bool)
        return np.isfinite(self.window).all(axis=1)

    @property
    def needs_axis(self) -> bool:
        return bool(self.windowed.any())

    def on_axes(self, first: np.ndarray, last: np.ndarray) -> tuple[list[FitSpec], np.ndarray]:
        """Resolve the time windows for time axes from `first` to `last` (each (N,)).

        Returns the distinct resolved specs and, per axis, the index of its spec. Window
        ends are rounded outwards to a coarse grid (`time_window`), so traces with
        similar time axes share a spec.
        """
        start, lower, upper = self.box_on_axes(first, last)
        windowed = np.flatnonzero(self.windowed)
        if windowed.size == 0:
            return [self], np.zeros(start.shape[0], dtype=np.intp)
        keys = np.concatenate([lower[:, windowed], start[:, windowed], upper[:, windowed]], axis=1)
        _, first_row, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        specs = [self.resolved(start[r], lower[r], upper[r]) for r in first_row]
        return specs, inverse.reshape(-1)

    def box_on_axes(
        self, first: np.ndarray, last: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start values, lower and upper bounds (each (N, P)) for time axes from
        `first` to `last` (each (N,)): the spec's own, but for its windowed parameters
        those of each axis (`time_window`; a start the request gave stays, inside a
        window widened to hold it)."""
        first = np.asarray(first, dtype=np.float64).reshape(-1)
        last = np.asarray(last, dtype=np.float64).reshape(-1)
        n = first.size
        lower, start, upper = (np.tile(a, (n, 1)) for a in (self.lower, self.start, self.upper))
        if self.window is None:
            return start, lower, upper
        given = self.start_given if self.start_given is not None else np.zeros(len(self.names))
        for i in np.flatnonzero(self.windowed):
            lo, st, hi = time_window(first, last, self.window[i])
            lo = np.maximum(lo, self.lower[i])
            hi = np.minimum(hi, self.upper[i])
            if given[i]:  # the request's start stays, inside a widened window
                st = np.full(n, self.start[i])
                lo, hi = np.minimum(lo, st), np.maximum(hi, st)
            lower[:, i], start[:, i], upper[:, i] = lo, np.clip(st, lo, hi), hi
        return start, lower, upper

    def resolved(self, start: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> FitSpec:
        """This spec with the start and bounds of one time axis (no window left)."""
        return replace(self, start=start, lower=lower, upper=upper, window=None)

    def for_times(self, t: np.ndarray) -> FitSpec:
        """The spec resolved for one time axis `t` (T,) shared by every trace."""
        times = np.asarray(t, dtype=np.float64).reshape(-1)
        times = times[np.isfinite(times)]
        first, last = (times.min(), times.max()) if times.size else (np.nan, np.nan)
        specs, _ = self.on_axes(np.array([first]), np.array([last]))
        return specs[0]

    def as_dict(self) -> dict[str, Any]:
        windowed = self.windowed
        out: dict[str, Any] = {}
        for i, name in enumerate(self.names):
            entry: dict[str, Any] = {
                "start": float(self.start[i]),
                "lower": float(self.lower[i]),
                "upper": float(self.upper[i]),
                "fixed": not bool(self.free[i]),
            }
            if windowed[i]:
                assert self.window is not None
                # resolved per time axis: the fit's summary lists the bounds used
                entry["lower"] = entry["upper"] = None
                if self.start_given is None or not self.start_given[i]:
                    entry["start"] = None
                entry["from_time_axis"] = [float(f) for f in self.window[i]]
            out[name] = entry
        return {"model": self.model.name, "parameters": out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitSpec:
        """The spec :meth:`as_dict` wrote, rebuilt as it is: it was checked when it was
        resolved (:func:`resolve_spec`)."""
        model = get_model(str(data["model"]))
        entries = [data["parameters"][n] for n in model.names]
        # A parameter resolved per time axis was written without its numbers (None): they
        # are the model's own, as resolve_spec left them, and its window says the rest.
        defaults = {
            "start": [p.default for p in model.parameters],
            "lower": [p.lower for p in model.parameters],
            "upper": [p.upper for p in model.parameters],
        }

        def column(key: str) -> np.ndarray:
            pairs = zip(entries, defaults[key], strict=True)
            return np.array([d if e[key] is None else e[key] for e, d in pairs], dtype=np.float64)

        window = np.array(
            [e.get("from_time_axis") or [np.nan] * 3 for e in entries], dtype=np.float64
        )
        given = np.array(
            [e.get("from_time_axis") is not None and e["start"] is not None for e in entries]
        )
        fixed = np.array([bool(e["fixed"]) for e in entries], dtype=bool)
        return cls(model, column("start"), column("lower"), column("upper"), ~fixed, window, given)

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
    window = np.full((len(names), 3), np.nan)
    for i, p in enumerate(m.parameters):
        if p.window is not None and p.name not in (bounds or {}):
            window[i] = p.window
    given = np.array([name in (params or {}) for name in names], dtype=bool)
    return FitSpec(m, start, lower, upper, free, window, given)


def time_window(
    first: np.ndarray, last: np.ndarray, fractions: Iterable[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds and start of a time-like parameter for time axes from `first` to `last`.

    Parameters
    ----------
    first, last : (N,) ndarray
        First and last time of each axis (non-finite: an axis without times, taken as 0).
    fractions : (lower, start, upper)
        Fractions of the span `last - first`, counted from `first`.

    Returns
    -------
    lower, start, upper : (N,) ndarray
        Rounded outwards (the start to the nearest) to multiples of a power of two near
        an eighth of the span: whole hours for a 10-hour movie, 2 h for 30 h. Traces
        whose axes differ a little get the same window, and bounds read as round numbers.
    """
    ok = np.isfinite(first) & np.isfinite(last)
    first = np.where(ok, first, 0.0)
    span = np.where(ok, np.maximum(last - first, 0.0), 0.0)
    with np.errstate(divide="ignore"):
        step = np.where(
            span > 0, 2.0 ** (np.floor(np.log2(np.where(span > 0, span, 1.0))) - 3), 1.0
        )
    f_lo, f_start, f_hi = fractions
    lower = np.floor((first + f_lo * span) / step) * step
    upper = np.ceil((first + f_hi * span) / step) * step
    start = np.clip(np.round((first + f_start * span) / step) * step, lower, upper)
    return lower, start, upper


def _finite(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise InvalidInput(f"{what} must be finite, got {value!r}")
    return out
