"""Read traces (long CSV, wide CSV, Parquet) into a NaN-padded `(N, T)` array, in hours.

Long format is what the merge step writes: an optional first line
`# Time units: min|h|s`, then columns `time,fov,cell,value`, one row per cell and frame.
Wide format has a time column first and one column per cell (named `fov_cell`, or any
name). Parquet files hold either layout; the time unit can sit in the schema metadata
under `time_units`. Ragged traces (different lengths, missing frames) are normal:
missing points are NaN.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from common.errors import InvalidInput

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
_UNIT_LINE = re.compile(rb"^#\s*time\s*units?\s*:\s*(\w+)", re.IGNORECASE)


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


def read_traces(data: bytes, *, name: str = "", time_unit: str | None = None) -> Traces:
    """Parse a traces file.

    Parameters
    ----------
    data : bytes
        File contents: CSV (long or wide) or Parquet (detected by its magic bytes).
    name : str, optional
        File name, used in error messages.
    time_unit : {"h", "min", "s"}, optional
        Unit of the time column when the file does not say; default hours.

    Returns
    -------
    Traces
        Times converted to hours.

    Raises
    ------
    InvalidInput
        Empty file, unreadable CSV/Parquet, wrong or missing columns, non-numeric or
        infinite values, no value at all (every one missing or NaN), duplicate
        (fov, cell, time) rows, unknown time unit.
    """
    label = f"{name!r}: " if name else ""
    if not data or not data.strip():
        raise InvalidInput(f"{label}the traces file is empty")
    if data[:4] == b"PAR1":
        table, unit = _read_parquet(data, label)
    else:
        table, unit = _read_csv(data, label)
    unit = (unit or time_unit or "h").lower()
    if unit not in UNIT_HOURS:
        raise InvalidInput(f"{label}unknown time unit {unit!r}; use one of min, h, s")
    columns = [c.strip().lower() for c in table.column_names]
    if table.num_rows == 0:
        raise InvalidInput(f"{label}the traces file has a header but no data rows")
    layout = layout_of(columns, label)
    if layout == "long":
        arrays = {c: table.column(columns.index(c)) for c in LONG_COLUMNS}
        t, y, fov, cell = _from_long(arrays, label)
        nan_values = int(np.isnan(_numeric(arrays["value"], "value", label, allow_nan=True)).sum())
    else:
        t, y, fov, cell = _from_wide(table, label)
        nan_values = int(np.isnan(y).sum())
    if not np.isfinite(y).any():
        raise InvalidInput(f"{label}the traces file has no values: every value is missing or NaN")
    return Traces(t * UNIT_HOURS[unit], y, fov, cell, unit, layout, nan_values)


def _read_csv(data: bytes, label: str) -> tuple[Any, str | None]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    unit = None
    lines = data.splitlines()
    skip = 0
    for line in lines:
        if not line.startswith(b"#"):
            break
        match = _UNIT_LINE.match(line)
        if match:
            unit = match.group(1).decode()
        skip += 1
    if skip >= len(lines) or not lines[skip].strip():
        raise InvalidInput(f"{label}the traces file has no header or data")
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(skip_rows=skip),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{label}not a readable CSV: {exc}") from None
    return table, unit


def _read_parquet(data: bytes, label: str) -> tuple[Any, str | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{label}not a readable Parquet file: {exc}") from None
    meta = table.schema.metadata or {}
    unit = meta.get(b"time_units") or meta.get(b"time_unit")
    return table, unit.decode() if unit else None


def _numeric(column: Any, what: str, label: str, *, allow_nan: bool) -> np.ndarray:
    """A float64 copy of an Arrow column, refusing text and infinities."""
    import pyarrow as pa

    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        values = column.to_pylist()
        for i, v in enumerate(values):
            try:
                float(v) if v is not None else None
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"{label}column {what!r} is not numeric: row {i + 1} holds {v!r}"
                ) from None
        raise InvalidInput(f"{label}column {what!r} is not numeric ({column.type})")
    out = column.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = np.isinf(out) if allow_nan else ~np.isfinite(out)
    if bad.any():
        first = int(np.flatnonzero(bad)[0]) + 1
        kind = "infinite" if allow_nan else "missing or infinite"
        raise InvalidInput(
            f"{label}column {what!r} has {int(bad.sum())} {kind} values (first at data "
            f"row {first}); leave missing values empty instead"
        )
    return out


def _from_long(cols: dict[str, Any], label: str) -> tuple[np.ndarray, ...]:
    time = _numeric(cols["time"], "time", label, allow_nan=False)
    value = _numeric(cols["value"], "value", label, allow_nan=True)
    fov = np.asarray(cols["fov"].to_numpy(zero_copy_only=False))
    cell = np.asarray(cols["cell"].to_numpy(zero_copy_only=False))
    keys = (
        np.rec.fromarrays([fov, cell])
        if fov.dtype != object and cell.dtype != object
        else np.array([f"{a}\x00{b}" for a, b in zip(fov, cell, strict=True)])
    )
    uniq, first, trace_of = np.unique(keys, return_index=True, return_inverse=True)
    n = uniq.shape[0]
    times, time_of = np.unique(time, return_inverse=True)
    counts = np.bincount(trace_of, minlength=n)
    if times.size <= 2 * counts.max():  # a shared frame grid (the merge step's output)
        t: np.ndarray = times
        col = time_of
        width = times.size
    else:  # each cell has its own times: pack them left, sorted
        order = np.lexsort((time, trace_of))
        rank = np.empty_like(order)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[order] = np.arange(order.size) - starts[trace_of[order]]
        col, width = rank, int(counts.max())
        t = np.full((n, width), np.nan)
        t[trace_of, col] = time
    slot = trace_of.astype(np.int64) * width + col
    if np.unique(slot).size != slot.size:
        raise InvalidInput(f"{label}duplicate rows: a (fov, cell, time) appears twice")
    y = np.full((n, width), np.nan)
    y.reshape(-1)[slot] = value
    return t, y, fov[first], cell[first]


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
    head = fh.read(HEAD_BYTES)
    if not head.strip():
        raise InvalidInput(f"{label}the traces file is empty")
    if head[:4] == b"PAR1":
        import pyarrow as pa
        import pyarrow.parquet as pq

        fh.seek(0)
        try:
            names = pq.ParquetFile(fh).schema_arrow.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{label}not a readable Parquet file: {exc}") from None
    else:
        lines = [line for line in head.splitlines() if not line.startswith(b"#")]
        if not lines or not lines[0].strip():
            raise InvalidInput(f"{label}the traces file has no header or data")
        if len(head) < HEAD_BYTES and not any(line.strip() for line in lines[1:]):
            raise InvalidInput(f"{label}the traces file has a header but no data rows")
        text = lines[0].decode("utf-8", errors="replace")
        names = next(csv.reader([text]))
    return layout_of([c.strip().lower() for c in names], label)


def _from_wide(table: Any, label: str) -> tuple[np.ndarray, ...]:
    names = list(table.column_names)
    t = _numeric(table.column(0), names[0], label, allow_nan=False)
    y = np.stack(
        [_numeric(table.column(i), names[i], label, allow_nan=True) for i in range(1, len(names))]
    )
    order = np.argsort(t, kind="stable")
    if np.unique(t).size != t.size:
        raise InvalidInput(f"{label}duplicate times in the time column {names[0]!r}")
    fov, cell = _split_names(names[1:])
    return t[order], y[:, order], fov, cell


def _split_names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`fov_cell` column names become integer fov and cell; anything else is fov 0."""
    parts = [re.fullmatch(r"(\d+)[_:](\d+)", n.strip()) for n in names]
    if all(parts):
        return (
            np.array([int(p.group(1)) for p in parts if p]),
            np.array([int(p.group(2)) for p in parts if p]),
        )
    return np.zeros(len(names), dtype=np.int64), np.array(names, dtype=object)


def summarize_traces(traces: Traces, *, preview: int = 5) -> dict[str, Any]:
    """The `load-traces` answer: counts, points per cell, units, ranges, a preview."""
    valid = np.isfinite(traces.y)
    per_cell = valid.sum(axis=1)
    values = traces.y[valid]
    t_all = np.broadcast_to(traces.t, traces.y.shape)[valid]
    items = []
    for i in range(min(preview, len(traces))):
        row = valid[i]
        ti = np.broadcast_to(traces.t, traces.y.shape)[i][row]
        items.append(
            {
                "fov": _plain(traces.fov[i]),
                "cell": _plain(traces.cell[i]),
                "time_h": [float(v) for v in ti],
                "value": [float(v) for v in traces.y[i][row]],
            }
        )
    return {
        "cell_count": len(traces),
        "time_points": {
            "min": int(per_cell.min()),
            "median": float(np.median(per_cell)),
            "max": int(per_cell.max()),
        },
        "time_units": traces.time_unit,
        "time_range_h": [float(t_all.min()), float(t_all.max())] if t_all.size else None,
        "value_range": [float(values.min()), float(values.max())] if values.size else None,
        "nan_count": traces.nan_values,
        "missing_points": int((~valid).sum()),
        "empty_cells": int((per_cell == 0).sum()),
        "layout": traces.layout,
        "preview": items,
    }


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
