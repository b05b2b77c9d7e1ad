"""The fitting params are the contract: validating them resolves the spec once, and the
resolved spec travels with them to the job and its chunks."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

import functions.fitting.capability as fitting
from common.capabilities import VALIDATED
from common.errors import InvalidInput
from functions.fitting.capability import FittingChunkParams, FittingOptions, FittingParams
from functions.fitting.spec import resolve_spec

FILE = uuid.UUID(int=1)
HOURS = np.linspace(0.0, 30.0, 181)


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def counting(model: str, **overrides: Any) -> Any:
        calls.append(model)
        return resolve_spec(model, **overrides)

    monkeypatch.setattr(fitting, "resolve_spec", counting)
    return calls


def test_a_request_resolves_once_and_its_job_and_chunks_trust_it(
    resolutions: list[str],
) -> None:
    asked = FittingOptions(model_params={"km": 2.0}, fixed=["km", "beta", "scale"])
    assert resolutions == ["maturation"]
    params = asked.for_file(FILE)
    stored = params.model_dump(mode="json")
    in_job = FittingParams.model_validate(stored, context=VALIDATED)
    chunk = FittingChunkParams.model_validate(
        {**in_job.choice(), "chunk_file_id": uuid.UUID(int=2)}, context=VALIDATED
    )
    in_chunk = FittingChunkParams.model_validate(chunk.model_dump(mode="json"), context=VALIDATED)
    assert resolutions == ["maturation"]
    expected = resolve_spec("maturation", params={"km": 2.0}, fixed=["km", "beta", "scale"])
    for spec in (in_job.spec, in_chunk.spec):
        assert spec.as_dict() == expected.as_dict()
        assert spec.free_names == expected.free_names
        # the onset's bounds still come from the data's time axis after the round trip
        on_axis, wanted = spec.for_times(HOURS), expected.for_times(HOURS)
        for a, b in ((on_axis.lower, wanted.lower), (on_axis.start, wanted.start)):
            assert np.array_equal(a, b)
        assert np.array_equal(on_axis.upper, wanted.upper)


def test_a_resolved_spec_sent_in_is_resolved_afresh(resolutions: list[str]) -> None:
    forged = resolve_spec("maturation").as_dict()
    forged["parameters"]["t0"].update(lower=5.0, upper=-5.0)  # never passes resolve_spec
    params = FittingParams.model_validate({"file_id": str(FILE), "resolved": forged})
    assert resolutions == ["maturation"]
    assert params.spec.as_dict() == resolve_spec("maturation").as_dict()


def test_bad_overrides_fail_validation() -> None:
    with pytest.raises(InvalidInput, match="unknown parameter 'zz'"):
        FittingParams(file_id=FILE, model_bounds={"zz": (0.0, 1.0)})
    with pytest.raises(InvalidInput, match="gompertz"):
        FittingOptions(model_type="gompertz")


def test_the_resolved_spec_is_not_part_of_the_public_schema() -> None:
    assert "resolved" not in FittingParams.model_json_schema()["properties"]
    assert "file_id" not in FittingOptions.model_json_schema()["properties"]
