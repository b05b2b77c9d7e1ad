"""Traces files as Arrow tables, and Arrow columns as numpy arrays, without a Python loop
per record: the tabular half of reading traces (`traces` shapes them).

A file is given as its bytes or as a path (a stored object's own file: read from disk,
never held whole in memory). CSV and Parquet are parsed by pyarrow, on its own threads
and outside the GIL; the optional `# Time units:` lines at the top of a CSV are read from
its first bytes only.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from common.errors import InvalidInput

Source = bytes | Path
HEAD_BYTES = 1 << 16  # the first bytes read for the magic number and `#` lines (grows)
# Bytes of CSV per batch of a streamed read: each batch's columns are freed (and their
# memory reused for the next) once its values are kept.
STREAM_BLOCK_BYTES = 1 << 20
# Bytes of CSV per block of a whole-table read: Arrow's cost per block and column
# dominates for wide files (a 20,000-column file: 8.2 s in 1 MiB blocks, 1.3 s in 16).
TABLE_BLOCK_BYTES = 1 << 24
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


def read_csv(
    source: Source, label: str, types: Callable[[list[str]], Typing | None] | None = None
) -> tuple[Any, str | None]:
    """The CSV as an Arrow table and the time unit its `# Time units:` line names, if any.

    Types are inferred, empty strings are null. `types`, given the header's names, may
    name the types the columns are expected to have and a check of the table read with
    them: parsing straight to known types costs less than half of inferring them (the
    file is parsed again, inferring, where they do not fit)."""
    skip, unit, header = _preamble(source, label)
    expected = types(header) if types is not None and header is not None else None
    if expected is not None:
        typed = _parse(source, label, skip, expected[0], quiet=True)
        if typed is not None and expected[1](typed):
            return typed, unit
    table = _parse(source, label, skip, None, quiet=False)
    return table, unit


def csv_batches(
    source: Source, label: str, types: Callable[[list[str]], Typing | None]
) -> tuple[Iterator[Any], str | None] | None:
    """The CSV's record batches one at a time, parsed to the types `types` expects of
    its header, and the time unit its `#` lines name; None when it expects none.
    Iterating raises pyarrow's ArrowInvalid at a value that does not parse to its
    type: the caller then reads the file with `read_csv`, which says why."""
    skip, unit, header = _preamble(source, label)
    expected = types(header) if header is not None else None
    if header is None or expected is None:
        return None
    try:
        reader = pacsv.open_csv(
            _arrow_input(source),
            read_options=pacsv.ReadOptions(skip_rows=skip, block_size=STREAM_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types=expected[0]
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):  # its first block does not parse
        return None
    return reader, unit


Typing = tuple[dict[str, Any], Callable[[Any], bool]]
"""Expected Arrow types by column name, and a check of a table read with them."""


def _parse(
    source: Source, label: str, skip: int, column_types: dict[str, Any] | None, *, quiet: bool
) -> Any:
    """Arrow's CSV reader over the file after its `#` lines; None for an error when
    `quiet` (reading with expected types), else InvalidInput."""

    try:
        return pacsv.read_csv(
            _arrow_input(source),
            read_options=pacsv.ReadOptions(skip_rows=skip, block_size=TABLE_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types=column_types
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if quiet:
            return None
        raise InvalidInput(f"{label}not a readable CSV: {exc}") from None


def _preamble(source: Source, label: str) -> tuple[int, str | None, list[str] | None]:
    """How many `#` lines open the file, the time unit they name, and the names in the
    header after them (None where Python's csv cannot read it). Reads as many first
    bytes as those lines take."""
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
    try:
        names = next(csv.reader([lines[skip].decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        names = None
    return skip, unit, names


def read_parquet(source: Source, label: str) -> tuple[Any, str | None]:
    """The Parquet file as an Arrow table and the time unit its schema metadata names
    (`time_units`), if any."""

    try:
        table = pq.read_table(_arrow_input(source))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{label}not a readable Parquet file: {exc}") from None
    meta = table.schema.metadata or {}
    unit = meta.get(b"time_units") or meta.get(b"time_unit")
    return table, unit.decode() if unit else None


def _arrow_input(source: Source) -> Any:

    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def numeric(column: Any, what: str, label: str, *, allow_nan: bool) -> np.ndarray:
    """A float64 copy of an Arrow column (nulls NaN), refusing text and infinities (and,
    unless `allow_nan`, missing values)."""

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


def check_numeric(column: Any, what: str, label: str, *, allow_nan: bool) -> int:
    """`numeric`'s checks without a numpy copy of the column (Arrow's kernels); returns
    how many values are missing or NaN. A column that fails is converted by `numeric`
    for its error message."""

    kind = column.type
    if pa.types.is_null(kind):
        missing = len(column)
    elif pa.types.is_integer(kind):
        missing = column.null_count
    elif pa.types.is_floating(kind):
        if pc.any(pc.is_inf(column)).as_py():
            numeric(column, what, label, allow_nan=allow_nan)  # raises, naming the row
        missing = column.null_count + int(pc.sum(pc.is_nan(column)).as_py() or 0)
    else:
        _refuse_text(column, what, label)
    if missing and not allow_nan:
        numeric(column, what, label, allow_nan=allow_nan)  # raises, naming the row
    return missing


def _refuse_text(column: Any, what: str, label: str) -> NoReturn:
    """Raise for a column that is not numbers, naming the first value that is not one.
    Only chunks that Arrow cannot read as numbers are looked at value by value."""

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


@dataclass(frozen=True)
class Factorized:
    """A column's distinct values, sorted, and each value's place among them, kept per
    Arrow chunk: `uniques[lut[chunks[i]]]` are chunk i's values. Nothing of the
    column's length is made until asked for, one chunk at a time (`codes`)."""

    chunks: list[np.ndarray]  # per chunk, each value's index into Arrow's dictionary
    lut: np.ndarray  # dictionary index -> rank among the sorted distinct values
    uniques: np.ndarray

    def codes(self, i: int) -> np.ndarray:
        """Chunk i's values as ranks (indices into `uniques`)."""
        return self.lut[self.chunks[i]]

    def all_codes(self) -> np.ndarray:
        return np.concatenate([self.codes(i) for i in range(len(self.chunks))])


def factorize(values: Any, *, as_text: bool = False) -> Factorized:
    """The distinct values of an Arrow column (or numpy array), sorted, and every
    value's place among them. Numbers sort as `np.unique` sorts them (nulls as NaN,
    last); text, and anything when `as_text`, by `str` of each value (nulls None).

    Hashing (Arrow's `dictionary_encode`) finds the distinct values in one pass outside
    the GIL; only they are sorted.
    """

    array = pa.chunked_array([values]) if isinstance(values, np.ndarray) else values
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    if not as_text:
        small = _small_integers(array)
        if small is not None:
            return small
    encoded = array.dictionary_encode(null_encoding="encode")
    if encoded.num_chunks == 0:
        return Factorized([], np.zeros(0, dtype=np.intp), np.zeros(0))
    # every chunk refers to one dictionary, complete in the last chunk
    dictionary = encoded.chunks[-1].dictionary.to_numpy(zero_copy_only=False)
    chunks = [c.indices.to_numpy() for c in encoded.chunks]
    if as_text or dictionary.dtype == object:
        keys = np.array([str(v) for v in dictionary])
        order = np.argsort(keys, kind="stable")
        lut = np.empty(order.size, dtype=np.intp)
        lut[order] = np.arange(order.size)
        return Factorized(chunks, lut, dictionary[order])
    # numbers that hash apart but compare equal (0.0 and -0.0) become one value
    uniques, lut = np.unique(dictionary, return_inverse=True)
    return Factorized(chunks, lut.reshape(-1), uniques)


DENSE_INTEGERS = 1 << 24  # integers in [0, this) are their own codes (no hashing)


def _small_integers(array: Any) -> Factorized | None:
    """`factorize` of an integer column whose values lie in [0, DENSE_INTEGERS) and none
    is missing (fov and cell numbers, usually): a table over the range marks the values
    present. None for any other column."""

    if not pa.types.is_integer(array.type) or array.null_count or len(array) == 0:
        return None
    low, high = pc.min_max(array).values()
    if low.as_py() < 0 or high.as_py() >= DENSE_INTEGERS:
        return None
    chunks = [c.to_numpy() for c in array.chunks]
    present = np.zeros(high.as_py() + 1, dtype=bool)
    for chunk in chunks:
        present[chunk] = True
    lut = np.cumsum(present, dtype=np.intp) - 1
    uniques = np.flatnonzero(present).astype(array.type.to_pandas_dtype())
    return Factorized(chunks, lut, uniques)


def is_text(column: Any) -> bool:
    """Whether numpy holds the column's values as Python objects (text, nulls only)."""

    kind = column.type
    return not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )
