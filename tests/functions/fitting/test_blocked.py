"""The merge step's long layout (a block of rows per trace, one frame grid, (fov, cell)
order) is read by reshaping, streamed a batch at a time, to exactly what the general
reader makes of it; any other layout falls back to the general reader."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import functions.fitting.trace_files as trace_files_module
import functions.fitting.traces as traces_module
from common.errors import InvalidInput
from functions.fitting.synthetic import synthetic_traces, to_long_csv
from functions.fitting.traces import Traces, read_traces


@pytest.fixture
def blocks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Small CSV batches (blocks cross them), and what each blocked read returned."""
    monkeypatch.setattr(trace_files_module, "STREAM_BLOCK_BYTES", 4096)
    seen: list[Any] = []
    real = traces_module.read_blocked

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(traces_module, "read_blocked", spy)
    return seen


def general(data: Any, monkeypatch: pytest.MonkeyPatch) -> Traces:
    """The file as the general reader (hashing every row) reads it."""
    with monkeypatch.context() as patch:
        patch.setattr(traces_module, "read_blocked", lambda *a, **k: None)
        return read_traces(data)


def same(a: Traces, b: Traces) -> None:
    for name in ("t", "y", "fov", "cell"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert (a.time_unit, a.layout, a.nan_values) == (b.time_unit, b.layout, b.nan_values)


def lines_of(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """(the `#` line and header, the rows)."""
    lines = data.split(b"\n")
    return lines[:2], [r for r in lines[2:] if r]


@pytest.fixture(scope="module")
def complete() -> bytes:
    traces = synthetic_traces("maturation", n=40, n_times=30, noise=0.02, seed=3)
    return to_long_csv(traces, time_unit="min")


def test_the_merge_steps_layout_is_read_as_the_general_reader_reads_it(
    complete: bytes, blocks: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    head, rows = lines_of(complete)
    rows[7] = rows[7].rsplit(b",", 1)[0] + b","  # a missing value (NaN), not a missing row
    data = b"\n".join([*head, *rows]) + b"\n"
    path = tmp_path / "traces.csv"
    path.write_bytes(data)
    for source in (data, path):
        fast = read_traces(source)
        assert blocks[-1] is not None  # read in blocks
        assert fast.y.shape == (40, 30) and fast.nan_values == 1
        same(fast, general(source, monkeypatch))


def test_long_parquet_in_blocks_is_read_as_the_general_reader_reads_it(
    complete: bytes, blocks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = traces_module.read_csv(complete, "", traces_module._expected_types)[0]
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, row_group_size=100)  # blocks cross row groups
    data = buf.getvalue().to_pybytes()
    fast = read_traces(data)
    assert blocks[-1] is not None
    same(fast, general(data, monkeypatch))


def shuffle_blocks(rows: list[bytes]) -> list[bytes]:
    """Cells out of (fov, cell) order: the second trace's block first."""
    return rows[30:60] + rows[:30] + rows[60:]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda rows: rows[:45] + rows[46:], id="a missing frame"),
        pytest.param(shuffle_blocks, id="cells out of order"),
        pytest.param(lambda rows: rows[::-1], id="rows reversed"),
        pytest.param(
            lambda rows: [r.replace(b"0,", b"5,", 1) if i == 65 else r for i, r in enumerate(rows)],
            id="a frame at another time",
        ),
        pytest.param(lambda rows: [b"0,0,a,1.0", *rows], id="text ids"),
    ],
)
def test_other_layouts_fall_back_to_the_general_reader(
    complete: bytes, blocks: list[Any], monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    head, rows = lines_of(complete)
    data = b"\n".join([*head, *change(rows)]) + b"\n"
    read = read_traces(data)
    assert all(b is None for b in blocks)
    same(read, general(data, monkeypatch))


def test_a_trace_twice_is_refused_as_duplicate_rows(complete: bytes, blocks: list[Any]) -> None:
    head, rows = lines_of(complete)
    with pytest.raises(InvalidInput, match="duplicate rows"):
        read_traces(b"\n".join([*head, *rows, *rows[:30]]) + b"\n")
    assert blocks == [None]


@pytest.mark.parametrize(
    ("value", "message"), [(b"inf", "1 infinite values"), (b"n/d", "row 1001 holds 'n/d'")]
)
def test_a_bad_value_deep_in_the_stream_is_reported_by_the_general_reader(
    complete: bytes, blocks: list[Any], value: bytes, message: str
) -> None:
    head, rows = lines_of(complete)
    rows[1000] = rows[1000].rsplit(b",", 1)[0] + b"," + value
    with pytest.raises(InvalidInput, match=message):
        read_traces(b"\n".join([*head, *rows]) + b"\n", name="x.csv")
