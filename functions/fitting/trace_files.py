"""Traces files as Arrow tables, and Arrow columns as numpy arrays, without a Python loop
per record: the tabular half of reading traces (`traces` shapes them).

A file is given as its bytes or as a path (a stored object's own file: read from disk,
never held whole in memory). CSV and Parquet are parsed by pyarrow, on its own threads
and outside the GIL; the optional `# Time units:` lines at the top of a CSV are read from
its first bytes only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidInput

Source = bytes | Path
HEAD_BYTES = 1 << 16  # the first bytes read for the magic number and `#` lines (grows)
_UNIT_LINE = re.compile(rb"^#\s*time\s*units?\s*:\s*(\w+)", re.IGNORECASE)


def is_blank(source: Source) -> bool:
    """Whether the file is empty or holds only whitespace (read until the first byte
    that is not)."""
    if isinstance(source, bytes):
        return not source or source.isspace()
    with source.open("rb") as f:
        while block := f.read(HEAD_BYTES):
            if not block.isspace():
                return False
    return True


def head(source: Source, size: int = HEAD_BYTES) -> bytes:
    """The file's first `size` bytes (fewer when it is shorter)."""
    if isinstance(source, bytes):
        return source[:size]
    with source.open("rb") as f:
        return f.read(size)


def read_csv(source: Source, label: str) -> tuple[Any, str | None]:
    """The CSV as an Arrow table (types inferred, empty strings null) and the time unit
    its `# Time units:` line names, if any."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    skip, unit = _preamble(source, label)
    try:
        table = pacsv.read_csv(
            _arrow_input(source),
            read_options=pacsv.ReadOptions(skip_rows=skip),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{label}not a readable CSV: {exc}") from None
    return table, unit


def _preamble(source: Source, label: str) -> tuple[int, str | None]:
    """How many `#` lines open the file and the time unit they name; the line after
    them must be a header. Reads as many first bytes as those lines take."""
    size = HEAD_BYTES
    while True:
        first = head(source, size)
        lines = first.splitlines()
        skip, unit = 0, None
        for line in lines:
            if not line.startswith(b"#"):
                break
            match = _UNIT_LINE.match(line)
            if match:
                unit = match.group(1).decode()
            skip += 1
        whole = len(first) < size
        if skip < len(lines) - (0 if whole else 1) or whole:
            break  # the line after the comments is complete (or the file ends)
        size *= 4
    if skip >= len(lines) or not lines[skip].strip():
        raise InvalidInput(f"{label}the traces file has no header or data")
    return skip, unit


def read_parquet(source: Source, label: str) -> tuple[Any, str | None]:
    """The Parquet file as an Arrow table and the time unit its schema metadata names
    (`time_units`), if any."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(_arrow_input(source))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{label}not a readable Parquet file: {exc}") from None
    meta = table.schema.metadata or {}
    unit = meta.get(b"time_units") or meta.get(b"time_unit")
    return table, unit.decode() if unit else None


def _arrow_input(source: Source) -> Any:
    import pyarrow as pa

    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def numeric(column: Any, what: str, label: str, *, allow_nan: bool) -> np.ndarray:
    """A float64 copy of an Arrow column (nulls NaN), refusing text and infinities (and,
    unless `allow_nan`, missing values)."""
    import pyarrow as pa

    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        _refuse_text(column, what, label)
    out = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.isinf(out) if allow_nan else ~np.isfinite(out)
    if bad.any():
        first = int(np.argmax(bad)) + 1
        kind = "infinite" if allow_nan else "missing or infinite"
        raise InvalidInput(
            f"{label}column {what!r} has {int(bad.sum())} {kind} values (first at data "
            f"row {first}); leave missing values empty instead"
        )
    return out


def _refuse_text(column: Any, what: str, label: str) -> None:
    """Raise for a column that is not numbers, naming the first value that is not one.
    Only chunks that Arrow cannot read as numbers are looked at value by value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    row = 0
    for chunk in chunks:
        try:
            pc.cast(chunk, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for i, v in enumerate(chunk.to_pylist()):
                try:
                    float(v) if v is not None else None
                except (TypeError, ValueError):
                    raise InvalidInput(
                        f"{label}column {what!r} is not numeric: row {row + i + 1} holds {v!r}"
                    ) from None
        row += len(chunk)
    raise InvalidInput(f"{label}column {what!r} is not numeric ({column.type})")


def factorize(values: Any, *, as_text: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values of an Arrow or numpy array, the values sorted and
    `values[i] == uniques[codes[i]]`. Numbers sort as `np.unique` sorts them (nulls as
    NaN, last); text, and anything when `as_text`, by `str` of each value (nulls None).

    Hashing (Arrow's `dictionary_encode`) finds the distinct values in one pass outside
    the GIL; only they are sorted.
    """
    import pyarrow as pa

    array = pa.chunked_array([values]) if isinstance(values, np.ndarray) else values
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    encoded = array.dictionary_encode(null_encoding="encode")
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0)
    # every chunk refers to one dictionary, complete in the last chunk
    dictionary = encoded.chunks[-1].dictionary.to_numpy(zero_copy_only=False)
    codes = np.concatenate([c.indices.to_numpy() for c in encoded.chunks])
    if as_text or dictionary.dtype == object:
        keys = np.array([str(v) for v in dictionary])
        order = np.argsort(keys, kind="stable")
        rank = np.empty(order.size, dtype=np.intp)
        rank[order] = np.arange(order.size)
        return rank[codes], dictionary[order]
    # numbers that hash apart but compare equal (0.0 and -0.0) become one value
    uniques, rank = np.unique(dictionary, return_inverse=True)
    return rank.reshape(-1)[codes], uniques


def is_text(column: Any) -> bool:
    """Whether numpy holds the column's values as Python objects (text, nulls only)."""
    import pyarrow as pa

    kind = column.type
    return not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )
