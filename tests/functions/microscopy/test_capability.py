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


def test_fov_jobs_report_and_poll_at_most_once_an_interval() -> None:
    from functions.microscopy.capability import _at_most_every, _polled_every

    reported: list[float] = []
    progress = _at_most_every(3600.0, lambda f, m: reported.append(f))
    for fraction in (0.25, 0.5, 0.75, 1.0):
        progress(fraction, "")
    assert reported == [0.25, 1.0]  # the first at once, the last always

    answers = iter([False, True])
    polls: list[int] = []

    def check() -> bool:
        polls.append(1)
        return next(answers)

    slow = _polled_every(3600.0, check)
    assert [slow(), slow(), slow()] == [False, False, False] and len(polls) == 1
    eager = _polled_every(0.0, check)
    assert eager() is True and eager() is True and len(polls) == 2  # a yes is kept
