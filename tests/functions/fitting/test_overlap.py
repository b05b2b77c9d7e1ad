"""Fitting while a streamed CSV is read gives the fit of the whole file read first; a
file that is not streamed, or fails late, is handled like a plain read."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import functions.fitting.overlap as overlap_module
import functions.fitting.trace_files as trace_files_module
from common.errors import InvalidInput
from functions.fitting.fit import fit_traces
from functions.fitting.packing import FIT_FIELDS
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces, to_long_csv
from functions.fitting.traces import read_traces


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of a few traces and early slices of 64, so a small file has many."""
    monkeypatch.setattr(trace_files_module, "STREAM_BLOCK_BYTES", 8192)
    monkeypatch.setattr(overlap_module, "EARLY_SLICE", 64)
    monkeypatch.setattr(overlap_module, "SLICE_TRACES", 100)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic_traces("maturation", n=400, n_times=60, noise=0.02, seed=5)
    path = tmp_path_factory.mktemp("overlap") / "traces.csv"
    path.write_bytes(to_long_csv(data, time_unit="min"))
    return path


def read_and_fit(source: Any, counts: list[tuple[int, int | None]] | None = None) -> Any:
    return overlap_module.read_and_fit(
        resolve_spec("maturation"),
        source,
        name="traces.csv",
        time_unit=None,
        threads=2,
        progress=lambda fitted, total: (counts if counts is not None else []).append(
            (fitted, total)
        ),
        cancelled=lambda: False,
    )


def assert_same_fit(a: Any, b: Any) -> None:
    for name in FIT_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_fitting_while_reading_gives_the_fit_of_the_whole_file(
    csv_file: Path, small_steps: None
) -> None:
    counts: list[tuple[int, int | None]] = []
    traces, fit = read_and_fit(csv_file, counts)
    assert any(total is None and fitted > 0 for fitted, total in counts)  # fitted early
    assert counts[-1] == (400, 400)
    whole = read_traces(csv_file)
    np.testing.assert_array_equal(traces.y, whole.y)
    assert_same_fit(fit, fit_traces(resolve_spec("maturation"), whole.t, whole.y))


def test_a_file_read_whole_is_fitted_after_its_read(csv_file: Path, small_steps: None) -> None:
    """Rows in another order: nothing is streamed, the general reader sorts them."""
    lines = csv_file.read_bytes().split(b"\n")
    shuffled = b"\n".join([*lines[:2], *reversed([r for r in lines[2:] if r])]) + b"\n"
    counts: list[tuple[int, int | None]] = []
    traces, fit = read_and_fit(shuffled, counts)
    assert all(total == 400 for _, total in counts)
    whole = read_traces(csv_file)
    np.testing.assert_array_equal(traces.y, whole.y)
    assert_same_fit(fit, fit_traces(resolve_spec("maturation"), whole.t, whole.y))


def test_a_bad_value_late_in_the_file_fails_after_early_fits(
    csv_file: Path, small_steps: None
) -> None:
    lines = csv_file.read_bytes().split(b"\n")
    lines[20_000] = lines[20_000].rsplit(b",", 1)[0] + b",n/d"
    counts: list[tuple[int, int | None]] = []
    with pytest.raises(InvalidInput, match="'value' is not numeric: row 19999 holds 'n/d'"):
        read_and_fit(b"\n".join(lines), counts)
    assert any(total is None for _, total in counts)
    assert not [t for t in threading.enumerate() if t.name == "fitting-read"]


def test_slices_of_traces_with_their_own_time_axes_fit_as_the_whole() -> None:
    data = synthetic_traces("maturation", n=30, n_times=40, noise=0.02, seed=9)
    y = np.asarray(data.y, dtype=np.float64)
    t = np.tile(np.asarray(data.t, dtype=np.float64), (len(y), 1))
    t += np.arange(len(y))[:, None] * 0.01  # each trace its own axis
    spec = resolve_spec("maturation")
    whole = fit_traces(spec, t, y, device="cpu", workers=1)
    parts = overlap_module.fit_slices(
        spec, t, y, step=7, threads=1, progress=None, cancelled=lambda: False
    )
    sliced = overlap_module.merge_fits(parts)
    for field in FIT_FIELDS:
        np.testing.assert_array_equal(getattr(sliced, field), getattr(whole, field))
