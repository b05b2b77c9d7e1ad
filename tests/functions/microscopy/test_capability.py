"""A workflow's params are checked against its file once: `checked_fovs` (FOVs,
channels, z plane)."""

from __future__ import annotations

import uuid

import pytest

from common.errors import InvalidInput
from functions.microscopy.capability import WorkflowParams, checked_fovs, plan_workflow
from functions.microscopy.pipeline import WorkflowOptions

FILE = {"n_fovs": 3, "n_channels": 2, "n_z": 4}


def _params(fovs: str | list[int] | None = None, **options: object) -> WorkflowParams:
    return WorkflowParams(file_id=uuid.UUID(int=1), fovs=fovs, options=WorkflowOptions(**options))


def test_every_fov_when_none_are_named() -> None:
    assert checked_fovs(_params(), FILE) == [0, 1, 2]
    assert plan_workflow(_params("2, 0-1"), FILE).fovs == [0, 1, 2]
    assert checked_fovs(_params("1-"), FILE) == [1, 2]
    assert checked_fovs(_params("0, 2 -"), FILE) == [0, 2]
    assert checked_fovs(_params(z=3), FILE) == [0, 1, 2]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (_params([3]), "FOV 3 does not exist"),
        (_params("1-4"), "FOV 4 does not exist"),
        (_params(phase_channel=1, fluorescence_channels=[2]), "channel 2 does not exist"),
        (_params(z=4), "z plane 4 does not exist"),
        (_params("3-"), "FOV 3 does not exist"),
    ],
)
def test_what_the_file_lacks_is_named(params: WorkflowParams, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        checked_fovs(params, FILE)
