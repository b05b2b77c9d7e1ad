"""Merge of good traces per sample, feature and channel; FOV specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from common.errors import InvalidInput
from functions.microscopy.merge import feature_columns, merge_samples, parse_fov_spec
from functions.microscopy.traces import build_table


@pytest.mark.parametrize(
    ("spec", "fovs"),
    [
        ("0-5, 7, 9-11", [0, 1, 2, 3, 4, 5, 7, 9, 10, 11]),
        ("3", [3]),
        (" 2 - 4 ,2", [2, 3, 4]),
        ([4, 1, 1], [1, 4]),
        (range(3), [0, 1, 2]),
    ],
)
def test_fov_specs(spec: object, fovs: list[int]) -> None:
    assert parse_fov_spec(spec) == fovs  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec", ["", "a", "1-", "-2", "5-3", "1,,2", "1.5", [-1], [True], ["1"], []]
)
def test_invalid_fov_specs(spec: object) -> None:
    with pytest.raises(InvalidInput):
        parse_fov_spec(spec)  # type: ignore[arg-type]


def test_fov_spec_bounded_by_file() -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        parse_fov_spec("0-4", n_fovs=4)


def traces(fov: int, cells: int = 3, frames: int = 4) -> pa.Table:
    n = cells * frames
    cell = np.repeat(np.arange(1, cells + 1), frames)
    frame = np.tile(np.arange(frames), cells)
    return build_table(
        {
            "fov": np.full(n, fov),
            "cell": cell,
            "frame": frame,
            "time": frame * 5.0,
            "good": cell != 2,
            "position_x": np.zeros(n),
            "position_y": np.zeros(n),
            "bbox_x0": np.zeros(n, int),
            "bbox_y0": np.zeros(n, int),
            "bbox_x1": np.ones(n, int),
            "bbox_y1": np.ones(n, int),
            "area_ch_0": np.full(n, 10.0 + fov),
            "intensity_total_ch_1": cell * 100.0 + frame,
            "filter_reason": np.where(cell != 2, "", "short"),
        }
    )


def test_merge_writes_long_csv_of_good_cells(tmp_path: Path) -> None:
    paths = merge_samples([traces(0), traces(1), traces(2)], {"ctrl": "0-1", "drug": [2]}, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "ctrl_area_ch_0.csv",
        "ctrl_intensity_total_ch_1.csv",
        "drug_area_ch_0.csv",
        "drug_intensity_total_ch_1.csv",
    ]
    lines = (tmp_path / "ctrl_intensity_total_ch_1.csv").read_text().splitlines()
    assert lines[0] == "# Time units: min"
    assert lines[1] == "time,fov,cell,value"
    rows = [line.split(",") for line in lines[2:]]
    assert len(rows) == 2 * 2 * 4  # two FOVs, two good cells, four frames
    assert {r[2] for r in rows} == {"1", "3"}
    assert rows[0] == ["0", "0", "1", "100"]


def test_merge_selects_features_and_validates(tmp_path: Path) -> None:
    paths = merge_samples([traces(0)], {"a": "0"}, tmp_path, features=["area"])
    assert [p.name for p in paths] == ["a_area_ch_0.csv"]
    with pytest.raises(InvalidInput, match="unknown features"):
        merge_samples([traces(0)], {"a": "0"}, tmp_path, features=["volume"])
    with pytest.raises(InvalidInput, match="no traces for FOVs"):
        merge_samples([traces(0)], {"a": "0-1"}, tmp_path)
    with pytest.raises(InvalidInput, match="sample name"):
        merge_samples([traces(0)], {"../x": "0"}, tmp_path)


def test_feature_columns() -> None:
    assert feature_columns(["fov", "area_ch_0", "intensity_max_ch_12"]) == [
        ("area_ch_0", "area", 0),
        ("intensity_max_ch_12", "intensity_max", 12),
    ]
