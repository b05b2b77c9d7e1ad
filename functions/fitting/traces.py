"""Read traces (long CSV, wide CSV, Parquet) into a NaN-padded `(N, T)` array, in hours.

Long format is what the merge step writes: an optional first line
`# Time units: min|h|s`, then columns `time,fov,cell,value`, one row per cell and frame.
Wide format has a time column first and one column per cell (named `fov_cell`, or any
name). Parquet files hold either layout; the time unit can sit in the schema metadata
under `time_units`. Ragged traces (different lengths, missing frames) are normal:
missing points are NaN.

A long CSV laid out as the merge step writes it (a block of rows per trace on one
frame grid, `blocked`) is streamed a batch at a time and reshaped; any other file is
parsed whole by Arrow and its rows numbered by hashing (`_from_long`, `wide`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import InvalidInput
from functions.fitting.blocked import Blocked, read_blocked
from functions.fitting.trace_files import (
    check_numeric,
    csv_batches,
    factorize,
    head,
    is_blank,
    is_text,
    read_csv,
    read_parquet,
)
from functions.fitting.wide import from_wide

LONG_COLUMNS = ("time", "fov", "cell", "value")
UNIT_HOURS = {
    "h": 1.0,
    "hour": 1.0,
    "hours": 1.0,
    "min": 1 / 60,
    "minute": 1 / 60,
    "minutes": 1 / 60,
    "s": 1 / 3600,
    "sec": 1 / 3600,
    "second": 1 / 3600,
    "seconds": 1 / 3600,
}


@dataclass(frozen=True)
class Traces:
    """Traces on a time grid: `t` (T,) shared by all cells, or (N, T) per cell; `y`
    (N, T) with NaN for missing points; `fov`, `cell` (N,) identify each trace."""

    t: np.ndarray
    y: np.ndarray
    fov: np.ndarray
    cell: np.ndarray
    time_unit: str
    layout: str
    nan_values: int = 0  # NaN or empty values in the file itself (not padding)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return f"Traces(n={self.y.shape[0]}, T={self.y.shape[1]}, layout={self.layout!r})"


def read_traces(
    data: bytes | Path,
    *,
    name: str = "",
    time_unit: str | None = None,
    on_traces: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Traces:
    """Parse a traces file.

    Parameters
    ----------
    data : bytes or Path
        File contents, or the path of a file to read them from (never held whole in
        memory): CSV (long or wide) or Parquet (detected by its magic bytes).
    name : str, optional
        File name, used in error messages.
    time_unit : {"h", "min", "s"}, optional
        Unit of the time column when the file does not say; default hours.
    on_traces : callable, optional
        Called while a CSV in the merge step's layout is streamed (`blocked`), after
        each batch, with the time axis (T,) in hours and every trace complete so far
        (n, T), a view: when the result's `y` shares its memory, they are the result's
        first n traces (else the file was read another way, and they are not).

    Returns
    -------
    Traces
        Times converted to hours; traces ordered by (fov, cell).

    Raises
    ------
    InvalidInput
        Empty file, unreadable CSV/Parquet, wrong or missing columns, non-numeric or
        infinite values, no value at all (every one missing or NaN), duplicate
        (fov, cell, time) rows, unknown time unit.
    """
    label = f"{name!r}: " if name else ""
    if is_blank(data):
        raise InvalidInput(f"{label}the traces file is empty")
    parquet = head(data, 4) == b"PAR1"
    streamed = None if parquet else _read_blocked_csv(data, label, time_unit, on_traces)
    if streamed is not None:
        blocked, hours_unit = streamed
        return _traces(
            blocked.t, blocked.y, blocked.fov, blocked.cell, hours_unit, blocked.nan_values, label
        )
    if parquet:
        table, unit = read_parquet(data, label)
    else:
        table, unit = read_csv(data, label, _expected_types)
    unit = _hours_unit(unit, time_unit, label)
    columns = [c.strip().lower() for c in table.column_names]
    if table.num_rows == 0:
        raise InvalidInput(f"{label}the traces file has a header but no data rows")
    layout = layout_of(columns, label)
    if layout == "long":
        arrays = {c: table.column(columns.index(c)) for c in LONG_COLUMNS}
        del table  # the four columns alone live on
        # a CSV in blocks was streamed above: only a Parquet file is looked at for them
        t, y, fov, cell, nan_values = _from_long(arrays, label, blocks=parquet)
    else:
        t, y, fov, cell = from_wide(table, label)
        nan_values = int(np.isnan(y).sum())
    return _traces(t, y, fov, cell, unit, nan_values, label, layout)


def _hours_unit(unit: str | None, time_unit: str | None, label: str) -> str:
    """The time unit the file names, else the one asked for, else hours; checked."""
    unit = (unit or time_unit or "h").lower()
    if unit not in UNIT_HOURS:
        raise InvalidInput(f"{label}unknown time unit {unit!r}; use one of min, h, s")
    return unit


def _traces(
    t: Any,
    y: Any,
    fov: Any,
    cell: Any,
    unit: str,
    nan_values: int,
    label: str,
    layout: str = "long",
) -> Traces:
    if not np.isfinite(y).any():
        raise InvalidInput(f"{label}the traces file has no values: every value is missing or NaN")
    return Traces(t * UNIT_HOURS[unit], y, fov, cell, unit, layout, nan_values)


def _read_blocked_csv(
    data: bytes | Path,
    label: str,
    time_unit: str | None,
    on_traces: Callable[[np.ndarray, np.ndarray], None] | None,
) -> tuple[Blocked, str] | None:
    """A long CSV in the merge step's layout (`blocked`), parsed a batch at a time and
    never held whole as a table, and its time unit; None for any other CSV (read as a
    table instead)."""
    opened = csv_batches(data, label, _expected_long_types)
    if opened is None:
        return None
    batches, named = opened
    unit = _hours_unit(named, time_unit, label)
    hours = UNIT_HOURS[unit]

    def in_hours(t: np.ndarray, y: np.ndarray) -> None:
        if on_traces is not None:
            on_traces(t * hours, y)

    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    renamed = (b.rename_columns([n.strip().lower() for n in b.schema.names]) for b in batches)
    try:
        # a row takes at least 6 bytes ("0,0,0,"): room for every row
        blocked = read_blocked(renamed, capacity=size // 6 + 1, on_rows=in_hours)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return (blocked, unit) if blocked is not None else None


def _expected_long_types(names: list[str]) -> Any:
    """`_expected_types` of a long-format header; None for any other."""
    long = set(LONG_COLUMNS) <= {n.strip().lower() for n in names}
    return _expected_types(names) if long else None


def _expected_types(names: list[str]) -> Any:
    """The types a traces CSV's columns have when it is what the merge step writes (long:
    times and values as numbers, fov and cell as integers, none missing) or a table of
    numbers (wide), and the check of a table read with them; None for other headers
    (a long format missing columns, ...), which are read inferring types."""

    plain = [n.strip().lower() for n in names]
    if len(set(plain)) != len(plain):
        return None
    if set(LONG_COLUMNS) <= set(plain):
        kinds = {"time": pa.float64(), "value": pa.float64(), "fov": pa.int64(), "cell": pa.int64()}
        types = {n: kinds[p] for n, p in zip(names, plain, strict=True) if p in kinds}
        ids = [n for n, p in zip(names, plain, strict=True) if p in ("fov", "cell")]
        return types, lambda table: all(table.column(n).null_count == 0 for n in ids)
    if any(p in LONG_COLUMNS[1:] for p in plain) or len(names) < 2:
        return None
    return dict.fromkeys(names, pa.float64()), lambda table: True


def _from_long(cols: dict[str, Any], label: str, *, blocks: bool = True) -> tuple[Any, ...]:
    """(t, y, fov, cell, NaN values) of long-format columns, one trace per (fov, cell).

    The columns are walked an Arrow chunk at a time: nothing of the file's length is
    made in numpy but where each trace has its own times."""

    check_numeric(cols["time"], "time", label, allow_nan=False)
    nan_values = check_numeric(cols["value"], "value", label, allow_nan=True)
    # the merge step's layout: reshaped, not hashed
    blocked = read_blocked(pa.table(cols).to_batches(), len(cols["time"])) if blocks else None
    if blocked is not None:
        return blocked.t, blocked.y, blocked.fov, blocked.cell, nan_values
    batches = pa.table(cols).to_batches()  # the columns' chunks, aligned
    column = {c: pa.chunked_array([b.column(c) for b in batches]) for c in LONG_COLUMNS}
    time = factorize(column["time"])
    times = time.uniques.astype(np.float64)
    ids = _TraceIds(column["fov"], column["cell"])
    values = [_values(b.column("value")) for b in batches]
    counts = np.zeros(ids.n, dtype=np.int64)
    for i in range(len(batches)):
        counts += np.bincount(ids.trace(i), minlength=ids.n)
    if times.size <= 2 * counts.max():  # a shared frame grid (the merge step's output)
        t, y = times, _on_grid(ids, time, values, times.size, label)
    else:  # each cell has its own times: pack them left, sorted
        trace_of, time_of = ids.all_traces(), time.all_codes()
        t, y = _packed(trace_of, time_of, times, counts, np.concatenate(values), label)
    return t, y, ids.fov, ids.cell, nan_values


def _values(chunk: Any) -> np.ndarray:
    """A chunk of the value column as floats (missing ones NaN)."""

    if pa.types.is_null(chunk.type):
        return np.full(len(chunk), np.nan)
    return np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=np.float64)


class _TraceIds:
    """The trace of each row, chunk by chunk, traces sorted by (fov, cell): as numbers,
    or, when either column is text, by their text; and each trace's fov and cell."""

    # (fov, cell) pairs are numbered through a table over every pair up to this many;
    # beyond it (ids unique across the whole file, say), by hashing the pairs' keys
    DENSE_PAIRS = 1 << 24

    def __init__(self, fov: Any, cell: Any) -> None:
        as_text = is_text(fov) or is_text(cell)
        self._fov = factorize(fov, as_text=as_text)
        self._cell = factorize(cell, as_text=as_text)
        self._width = self._cell.uniques.size
        pairs = self._fov.uniques.size * self._width
        if pairs <= self.DENSE_PAIRS:
            present = np.zeros(pairs, dtype=bool)
            for i in range(len(self._fov.chunks)):
                present[self._key(i)] = True
            keys = np.flatnonzero(present)
            self._lut = np.cumsum(present, dtype=np.int64) - 1
            self._hashed = None
        else:
            chunks = [pa.array(self._key(i)) for i in range(len(self._fov.chunks))]
            self._hashed = factorize(pa.chunked_array(chunks, type=pa.int64()))
            keys = self._hashed.uniques
        self.n = int(keys.size)
        self.fov = self._fov.uniques[keys // self._width]
        self.cell = self._cell.uniques[keys % self._width]

    def _key(self, i: int) -> np.ndarray:
        return self._fov.codes(i).astype(np.int64) * self._width + self._cell.codes(i)

    def trace(self, i: int) -> np.ndarray:
        """The trace of each row of chunk i."""
        if self._hashed is not None:
            return self._hashed.codes(i)
        return self._lut[self._key(i)]

    def all_traces(self) -> np.ndarray:
        return np.concatenate([self.trace(i) for i in range(len(self._fov.chunks))])


def _on_grid(
    ids: _TraceIds, time: Any, values: list[np.ndarray], width: int, label: str
) -> np.ndarray:
    """(n, width) values on the shared grid of times, NaN where a trace has no row."""
    seen = np.zeros(ids.n * width, dtype=bool)
    y = np.full(ids.n * width, np.nan)
    rows = 0
    for i, value in enumerate(values):
        slot = ids.trace(i) * width + time.codes(i)
        seen[slot] = True
        y[slot] = value
        rows += value.size
    if np.count_nonzero(seen) != rows:
        raise InvalidInput(f"{label}duplicate rows: a (fov, cell, time) appears twice")
    return y.reshape(ids.n, width)


def _packed(
    trace_of: np.ndarray,
    time_of: np.ndarray,
    times: np.ndarray,
    counts: np.ndarray,
    value: np.ndarray,
    label: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, max count) times and values of each trace, sorted by time, NaN-padded."""
    key = trace_of.astype(np.int64) * times.size + time_of
    order = np.argsort(key, kind="stable")
    key = key[order]
    if (key[1:] == key[:-1]).any():
        raise InvalidInput(f"{label}duplicate rows: a (fov, cell, time) appears twice")
    del key
    n, width = counts.size, int(counts.max())
    rows = trace_of[order]
    col = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.full((n, width), np.nan)
    y = np.full((n, width), np.nan)
    t[rows, col] = times[time_of[order]]
    y[rows, col] = value[order]
    return t, y


def layout_of(columns: list[str], label: str = "") -> str:
    """ "long" or "wide": the layout that (lower-cased) `columns` name; InvalidInput when
    they name neither (the one rule for the whole file and for its header alone)."""
    if set(LONG_COLUMNS) <= set(columns):
        return "long"
    if any(c in LONG_COLUMNS[1:] for c in columns):
        raise InvalidInput(
            f"{label}long format needs columns time,fov,cell,value; got {','.join(columns)}"
        )
    if len(columns) < 2:
        raise InvalidInput(
            f"{label}expected long format (time,fov,cell,value) or wide format (a time "
            f"column and one column per cell); got columns {','.join(columns)}"
        )
    return "wide"


#: Bytes of a CSV read to find its header (and a first data row).
HEAD_BYTES = 64 * 1024


def check_traces_head(fh: IO[bytes], *, name: str = "") -> str:
    """Check a traces file's columns from its head alone (a CSV's header line, a Parquet
    file's schema from its footer), without reading its rows: what a fitting job is
    checked against before it exists. Returns the layout; InvalidInput like
    :func:`read_traces` for an empty file, a header without data, or wrong columns.
    """
    label = f"{name!r}: " if name else ""
    start = fh.read(HEAD_BYTES)
    if not start.strip():
        raise InvalidInput(f"{label}the traces file is empty")
    if start[:4] == b"PAR1":
        fh.seek(0)
        try:
            names = pq.ParquetFile(fh).schema_arrow.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{label}not a readable Parquet file: {exc}") from None
    else:
        lines = [line for line in start.splitlines() if not line.startswith(b"#")]
        if not lines or not lines[0].strip():
            raise InvalidInput(f"{label}the traces file has no header or data")
        if len(start) < HEAD_BYTES and not any(line.strip() for line in lines[1:]):
            raise InvalidInput(f"{label}the traces file has a header but no data rows")
        text = lines[0].decode("utf-8", errors="replace")
        names = next(csv.reader([text]))
    return layout_of([c.strip().lower() for c in names], label)
