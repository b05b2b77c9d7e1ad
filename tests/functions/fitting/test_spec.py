"""Request overrides of start values, bounds and fixed flags, and their validation."""

from __future__ import annotations

import math

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
