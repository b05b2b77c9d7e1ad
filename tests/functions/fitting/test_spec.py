"""Request overrides of start values, bounds and fixed flags, and their validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.errors import InvalidInput
from functions.fitting.spec import resolve_spec


def test_defaults_follow_the_model() -> None:
    spec = resolve_spec("maturation")
    assert spec.free_names == ("t0", "ktl", "delta", "offset")
    assert spec.start[spec.names.index("km")] == 1.28


def test_overrides_apply() -> None:
    spec = resolve_spec(
        "maturation",
        params={"delta": 0.05, "km": 2.0},
        bounds={"t0": (-2, 2), "km": [0.5, 5]},
        fixed={"km": False, "offset": True},
    )
    assert spec.start[spec.names.index("delta")] == 0.05
    assert tuple(spec.lower[:1]) == (-2,) and spec.upper[0] == 2
    assert spec.free_names == ("t0", "ktl", "delta", "km")
    listed = resolve_spec("maturation", fixed=["km", "beta", "scale", "t0"])
    assert listed.free_names == ("ktl", "delta", "offset")
    assert resolve_spec("maturation").as_dict()["parameters"]["km"]["fixed"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bounds": {"delta": (1.0, 0.1)}}, "lower 1 > upper 0.1"),
        ({"params": {"delta": 20.0}}, "outside its bounds"),
        ({"params": {"delta": math.inf}}, "must be finite"),
        ({"params": {"delta": math.nan}}, "must be finite"),
        ({"params": {"delta": "fast"}}, "must be a number"),
        ({"bounds": {"delta": (0, math.inf)}}, "must be finite"),
        ({"bounds": {"delta": (0, 1, 2)}}, r"must be \[lower, upper\]"),
        ({"params": {"gamma": 1.0}}, "unknown parameter 'gamma'"),
        ({"fixed": ["t0", "ktl", "delta", "offset", "km", "beta", "scale"]}, "every parameter"),
    ],
)
def test_bad_overrides_are_invalid_input(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_spec("maturation", **kwargs)


def test_unknown_model() -> None:
    with pytest.raises(InvalidInput, match="unknown model"):
        resolve_spec("gompertz")


def test_onset_bounds_come_from_the_time_axis() -> None:
    spec = resolve_spec("maturation")
    assert spec.needs_axis and spec.as_dict()["parameters"]["t0"]["lower"] is None
    i = spec.names.index("t0")
    # 180 frames of 10 min (0 .. 29.8 h): a twentieth of the span before the first frame,
    # up to the last one, rounded outwards to 2 h; the start on the first frame
    on_30h = spec.for_times(np.arange(180) / 6)
    assert (on_30h.lower[i], on_30h.start[i], on_30h.upper[i]) == (-2.0, 0.0, 30.0)
    # the demo time-lapse: 60 frames of 10 min, rounded to whole hours
    on_10h = spec.for_times(np.arange(60) / 6)
    assert (on_10h.lower[i], on_10h.upper[i]) == (-1.0, 10.0)
    # an axis that starts later (time since transfection) moves the window with it
    late = spec.for_times(20 + np.arange(60) / 6)
    assert (late.lower[i], late.start[i], late.upper[i]) == (19.0, 20.0, 30.0)
    # everything else is the model's
    for resolved in (on_30h, on_10h, late):
        assert not resolved.needs_axis
        others = np.arange(len(spec.names)) != i
        np.testing.assert_array_equal(resolved.lower[others], spec.lower[others])
        np.testing.assert_array_equal(resolved.start[others], spec.start[others])


def test_every_time_like_parameter_has_a_window() -> None:
    t = np.arange(100) * 0.25
    for name in ("maturation", "maturation_blocked", "trivial", "logistic_growth"):
        spec = resolve_spec(name)
        resolved = spec.for_times(t)
        for i in np.flatnonzero(spec.windowed):
            assert resolved.lower[i] <= t[0] and resolved.upper[i] >= t[-1], name
            assert resolved.lower[i] <= resolved.start[i] <= resolved.upper[i]
    assert not resolve_spec("hill").needs_axis and not resolve_spec("exponential_decay").needs_axis


def test_request_bounds_and_starts_win_over_the_time_axis() -> None:
    t = np.arange(180) / 6
    i = resolve_spec("maturation").names.index("t0")
    given = resolve_spec("maturation", bounds={"t0": (-1, 1)})
    assert not given.needs_axis
    assert (given.for_times(t).lower[i], given.for_times(t).upper[i]) == (-1.0, 1.0)
    # a start outside the default window widens it; one inside keeps it
    outside = resolve_spec("maturation", params={"t0": 42.0}).for_times(t)
    assert (outside.lower[i], outside.start[i], outside.upper[i]) == (-2.0, 42.0, 42.0)
    inside = resolve_spec("maturation", params={"t0": 3.0}).for_times(t)
    assert (inside.lower[i], inside.start[i], inside.upper[i]) == (-2.0, 3.0, 30.0)


def test_axes_of_similar_span_share_a_spec() -> None:
    spec = resolve_spec("maturation")
    first = np.array([0.0, 0.1, 0.0, 5.0, np.nan])
    last = np.array([29.8, 29.9, 10.0, 35.0, np.nan])
    specs, which = spec.on_axes(first, last)
    i = spec.names.index("t0")
    bounds = [(specs[w].lower[i], specs[w].upper[i]) for w in which]
    assert bounds[0] == bounds[1] == (-2.0, 30.0)
    assert bounds[2] == (-1.0, 10.0) and bounds[3] == (2.0, 36.0)
    assert bounds[4] == (0.0, 0.0)  # an axis without times: nothing to fit anyway
    assert len(specs) == 4
