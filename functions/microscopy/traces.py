"""Traces tables: one row per cell and frame, PyAMA's columns, CSV and Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Leading columns, in PyAMA's order; ``<feature>_ch_<id>`` columns follow.
BASE_COLUMNS = (
    "fov",
    "cell",
    "frame",
    "time",
    "good",
    "position_x",
    "position_y",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
)


def feature_column(feature: str, channel: int) -> str:
    """Column name of a feature measured on a channel: ``intensity_total_ch_1``."""
    return f"{feature}_ch_{channel}"


def build_table(columns: dict[str, np.ndarray]) -> Any:
    """A ``pyarrow.Table`` with the base columns first, sorted by cell then frame.

    Parameters
    ----------
    columns : dict of (N,) ndarray
        Must hold every name in :data:`BASE_COLUMNS`; other columns keep their order.
    """
    import pyarrow as pa

    missing = [c for c in BASE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"traces lack columns {missing}")
    n = {len(v) for v in columns.values()}
    if len(n) > 1:
        raise ValueError(f"traces columns differ in length: {sorted(n)}")
    order = np.lexsort((columns["frame"], columns["cell"]))
    names = [*BASE_COLUMNS, *(c for c in columns if c not in BASE_COLUMNS)]
    return pa.table({c: np.asarray(columns[c])[order] for c in names})


def write_table(table: Any, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.parquet``; returns both paths."""
    import pyarrow.parquet as pq

    stem = Path(stem)
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    with open(csv_path, "wb") as fh:
        write_csv(table, fh)
    pq.write_table(table, parquet_path, compression="zstd")
    return csv_path, parquet_path


def read_table(path: str | Path) -> Any:
    """Read a traces table written by :func:`write_table` (CSV or Parquet)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path)


def write_csv(table: Any, fh: Any) -> None:
    """CSV with a plain (unquoted) header line, as pandas and PyAMA write it."""
    import pyarrow.csv as pacsv

    fh.write((",".join(table.column_names) + "\n").encode())
    pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False))
