"""The wide layout of a traces table: a time column, then one column per cell."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa

from common.errors import InvalidInput
from functions.fitting.trace_files import numeric


def from_wide(table: Any, label: str) -> tuple[np.ndarray, ...]:
    """(t, y, fov, cell) of a wide table: its first column the times, each other column
    a cell's values (named `fov_cell`, or anything); sorted by time."""
    names = list(table.column_names)
    t = numeric(table.column(0), names[0], label, allow_nan=False)
    y = _wide_matrix(table)
    if y is None:  # column by column, for the checks and messages of each
        y = np.empty((len(names) - 1, t.size))
        for i in range(1, len(names)):
            y[i - 1] = numeric(table.column(i), names[i], label, allow_nan=True)
    order = np.argsort(t, kind="stable")
    if np.unique(t).size != t.size:
        raise InvalidInput(f"{label}duplicate times in the time column {names[0]!r}")
    fov, cell = _split_names(names[1:])
    return t[order], y[:, order], fov, cell


def _wide_matrix(table: Any) -> np.ndarray | None:
    """(cells, T) values of a wide table whose cell columns are all floats (read to
    the types expected) and finite or missing (NaN), converted in one Arrow call: a
    loop over 100,000 columns costs seconds. None for any other table."""
    values = table.select(range(1, table.num_columns))
    if not all(pa.types.is_float64(field.type) for field in values.schema):
        return None
    parts = [
        np.asarray(batch.to_tensor(null_to_nan=True, row_major=False))
        for batch in values.to_batches()
    ]
    y = np.concatenate(parts, axis=0).T if parts else np.empty((values.num_columns, 0))
    return None if np.isinf(y).any() else y


def _split_names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`fov_cell` column names become integer fov and cell; anything else is fov 0."""
    parts = [re.fullmatch(r"(\d+)[_:](\d+)", n.strip()) for n in names]
    if all(parts):
        return (
            np.array([int(p.group(1)) for p in parts if p]),
            np.array([int(p.group(2)) for p in parts if p]),
        )
    return np.zeros(len(names), dtype=np.int64), np.array(names, dtype=object)
