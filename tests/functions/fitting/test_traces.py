"""Reading long CSV, wide CSV and Parquet traces; the load-traces summary; bad input."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import functions.fitting.traces as traces_module
import functions.fitting.wide as wide_module
from common.errors import InvalidInput
from functions.fitting.synthetic import synthetic_traces, to_long_csv, to_wide_csv
from functions.fitting.trace_summary import summarize_traces
from functions.fitting.traces import read_traces


@pytest.fixture(scope="module")
def ragged():
    return synthetic_traces("maturation", n=30, n_times=24, missing=0.1, ragged=True, seed=4)


@pytest.mark.parametrize("unit", ["min", "h", "s"])
def test_long_csv_round_trips_with_units(ragged, unit: str) -> None:
    tr = read_traces(to_long_csv(ragged, time_unit=unit))
    assert tr.layout == "long" and tr.time_unit == unit
    np.testing.assert_allclose(tr.t, ragged.t, rtol=1e-9)  # converted to hours
    np.testing.assert_array_equal(np.isnan(tr.y), np.isnan(ragged.y))
    np.testing.assert_allclose(np.nan_to_num(tr.y), np.nan_to_num(ragged.y), rtol=1e-9)
    np.testing.assert_array_equal(tr.fov, ragged.fov)
    np.testing.assert_array_equal(tr.cell, ragged.cell)


def test_time_unit_argument_applies_without_header(ragged) -> None:
    body = to_long_csv(ragged, time_unit="min").split(b"\n", 1)[1]
    tr = read_traces(body, time_unit="min")
    np.testing.assert_allclose(tr.t, ragged.t, rtol=1e-9)
    assert read_traces(body).time_unit == "h"  # default when nobody says


def test_wide_csv(ragged) -> None:
    tr = read_traces(to_wide_csv(ragged))
    assert tr.layout == "wide"
    np.testing.assert_allclose(np.nan_to_num(tr.y), np.nan_to_num(ragged.y), rtol=1e-9)
    np.testing.assert_array_equal(tr.cell, ragged.cell)
    named = read_traces(b"time,a,b\n0,1,2\n1,3,\n")
    assert list(named.cell) == ["a", "b"] and np.isnan(named.y[1, 1])


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_parquet(ragged, layout: str) -> None:
    if layout == "long":
        valid = np.isfinite(ragged.y)
        rows, cols = np.nonzero(valid)
        table = pa.table(
            {
                "time": ragged.t[cols] * 60,
                "fov": ragged.fov[rows],
                "cell": ragged.cell[rows],
                "value": ragged.y[valid],
            }
        )
        table = table.replace_schema_metadata({"time_units": "min"})
    else:
        names = [f"{f}_{c}" for f, c in zip(ragged.fov, ragged.cell, strict=True)]
        table = pa.table({"time": ragged.t, **dict(zip(names, ragged.y, strict=True))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    tr = read_traces(buf.getvalue())
    np.testing.assert_allclose(tr.t, ragged.t, rtol=1e-9)
    np.testing.assert_allclose(np.nan_to_num(tr.y), np.nan_to_num(ragged.y), rtol=1e-9)


def test_per_cell_time_grids_are_packed() -> None:
    # every cell has its own sampling times (no shared frame grid)
    data = b"time,fov,cell,value\n0,0,0,1\n1,0,0,2\n0.5,0,1,5\n1.5,0,1,6\n0.7,0,2,8\n0.9,0,2,9\n"
    tr = read_traces(data)
    assert tr.t.shape == tr.y.shape == (3, 2)
    np.testing.assert_allclose(tr.t, np.array([[0, 1], [0.5, 1.5], [0.7, 0.9]]))
    np.testing.assert_allclose(tr.y, [[1, 2], [5, 6], [8, 9]])


def test_summary_counts_all_cells(ragged) -> None:
    tr = read_traces(to_long_csv(ragged))
    summary = summarize_traces(tr, preview=3)
    per_cell = np.isfinite(ragged.y).sum(axis=1)
    assert summary["cell_count"] == 30
    assert summary["time_points"] == {
        "min": int(per_cell.min()),
        "median": float(np.median(per_cell)),
        "max": int(per_cell.max()),
    }
    assert summary["value_range"] == pytest.approx([np.nanmin(ragged.y), np.nanmax(ragged.y)])
    assert summary["missing_points"] == int((~np.isfinite(ragged.y)).sum())
    assert len(summary["preview"]) == 3 and summary["preview"][0]["cell"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"# Time units: min\n", "no header"),
        (b"time,fov,cell,value\n", "no data rows"),
        (b"time,fov,value\n0,0,1\n", "needs columns time,fov,cell,value"),
        (b"value\n1\n2\n", "long format needs columns"),
        (b"time\n1\n2\n", "expected long format"),
        (b"time,fov,cell,value\n0,0,0,abc\n", "'value' is not numeric: row 1 holds 'abc'"),
        (b"time,fov,cell,value\nx,0,0,1\n", "'time' is not numeric"),
        (b"time,fov,cell,value\n0,0,0,inf\n1,0,0,2\n", "1 infinite values"),
        (b"time,fov,cell,value\n0,0,0,1\n,0,0,2\n", "missing or infinite"),
        (b"time,fov,cell,value\n0,0,0,1\n0,0,0,2\n", "duplicate rows"),
        (b"# Time units: fortnights\ntime,a\n0,1\n", "unknown time unit"),
        (b"time,a\n0,1\n0,2\n", "duplicate times"),
        (b"PAR1 not really parquet", "not a readable Parquet"),
        (b"time,fov,cell,value\n0,0,0,\n1,0,0,nan\n", "has no values"),
        (b"time,a,b\n0,,\n1,nan,\n", "has no values"),
    ],
)
def test_bad_files_are_invalid_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_traces(data, name="x.csv")


def test_all_nan_cells_are_kept() -> None:
    tr = read_traces(b"time,fov,cell,value\n0,0,0,1\n1,0,0,2\n0,0,1,\n1,0,1,nan\n")
    assert len(tr) == 2 and np.isnan(tr.y[1]).all()
    summary = summarize_traces(tr)
    assert summary["empty_cells"] == 1 and summary["nan_count"] == 2


def test_row_order_does_not_matter_and_text_ids_sort_as_text(ragged, tmp_path) -> None:
    """Traces come out ordered by (fov, cell) whatever the rows' order; a path reads
    like the same bytes."""
    lines = to_long_csv(ragged).split(b"\n")
    rows = [r for r in lines[2:] if r]
    np.random.default_rng(0).shuffle(rows)
    shuffled = b"\n".join([*lines[:2], *rows]) + b"\n"
    path = tmp_path / "shuffled.csv"
    path.write_bytes(shuffled)
    a, b = read_traces(to_long_csv(ragged)), read_traces(path)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.cell, b.cell)
    text = read_traces(b"time,fov,cell,value\n0,b,10,1\n0,b,9,2\n0,a,x,3\n1,a,x,4\n")
    assert list(zip(text.fov, text.cell, strict=True)) == [("a", "x"), ("b", "10"), ("b", "9")]
    np.testing.assert_array_equal(text.y, [[3, 4], [1, np.nan], [2, np.nan]])


def test_duplicates_are_refused_on_per_cell_time_grids() -> None:
    data = b"time,fov,cell,value\n0,0,0,1\n1,0,0,2\n0.5,0,1,5\n0.5,0,1,6\n0.7,0,2,8\n0.9,0,2,9\n"
    with pytest.raises(InvalidInput, match="duplicate rows"):
        read_traces(data)


def test_text_deep_in_a_big_file_is_named_by_its_row() -> None:
    """Only the Arrow chunk holding the bad value is looked at value by value."""
    rows = [f"{i % 180},{i // 180},0,{i}.5" for i in range(200_000)]
    rows[150_000] = rows[150_000].rsplit(",", 1)[0] + ",n/d"
    data = ("time,fov,cell,value\n" + "\n".join(rows) + "\n").encode()
    with pytest.raises(InvalidInput, match="'value' is not numeric: row 150001 holds 'n/d'"):
        read_traces(data)


def test_comment_lines_longer_than_the_first_read() -> None:
    data = b"# " + b"x" * 100_000 + b"\n# Time units: s\ntime,fov,cell,value\n0,0,0,1\n3600,0,0,2\n"
    tr = read_traces(data)
    assert tr.time_unit == "s"
    np.testing.assert_allclose(tr.t, [0.0, 1.0])


def test_ids_numbered_by_hashing_read_like_those_numbered_by_table(
    ragged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(fov, cell) pairs beyond what a table over every pair holds (ids unique across a
    whole file) are numbered by hashing, to the same traces in the same order."""
    data = to_long_csv(ragged)
    table = read_traces(data)
    monkeypatch.setattr(traces_module._TraceIds, "DENSE_PAIRS", 1)
    hashed = read_traces(data)
    np.testing.assert_array_equal(hashed.y, table.y)
    np.testing.assert_array_equal(hashed.fov, table.fov)
    np.testing.assert_array_equal(hashed.cell, table.cell)


def test_wide_values_in_one_conversion_match_column_by_column(
    ragged, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = to_wide_csv(ragged)
    at_once = read_traces(data)
    monkeypatch.setattr(wide_module, "_wide_matrix", lambda table: None)
    by_column = read_traces(data)
    np.testing.assert_array_equal(at_once.y, by_column.y)
    np.testing.assert_array_equal(at_once.t, by_column.t)
    assert at_once.nan_values == by_column.nan_values > 0


def test_an_infinite_value_in_a_wide_file_is_named_by_its_column() -> None:
    with pytest.raises(InvalidInput, match="column 'b' has 1 infinite values"):
        read_traces(b"time,a,b\n0,1,2\n1,3,inf\n")
