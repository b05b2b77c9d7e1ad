"""The long layout the merge step writes, read without hashing: one block of rows per
trace, every block on the same frame grid, blocks in (fov, cell) order.

Such a file is its value column reshaped to `(traces, frames)`. Checking that a file is
laid out so takes a few vectorised comparisons per Arrow batch, where numbering the
traces and times of an arbitrary long file (`traces._from_long`) hashes and scatters
every row (at 18 M rows 1.2-2.4 s on one core). The batches can come from a CSV
reader one at a time: then no column of the file's length is ever made but the values
(on the machines this runs on, first touching fresh memory costs as much as parsing
into it). A file laid out any other way (ragged traces, another order, text ids, a
value that is not a number) is left to the general reader: `feed` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Blocked:
    """A long file's traces: `t` (T,), `y` (N, T), `fov` and `cell` (N,), and how many
    values were missing or NaN."""

    t: np.ndarray
    y: np.ndarray
    fov: np.ndarray
    cell: np.ndarray
    nan_values: int


def read_blocked(
    batches: Iterable[Any],
    capacity: int,
    on_rows: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Blocked | None:
    """The traces of long-format record batches (`time`, `fov`, `cell`, `value`) when
    they are laid out in blocks (see the module docstring); None when they are not.

    `capacity`: at least the number of rows (memory for it is reserved, and touched
    only as far as the rows go). `on_rows`, after each batch: the time grid and every
    trace complete so far, (n, T), a view of the values (they are the result's first n
    traces if it is not None).
    """
    blocks = _Blocks(capacity)
    for batch in batches:
        if not blocks.feed(batch):
            return None
        complete = blocks.rows // blocks.frames if blocks.frames else 0
        if on_rows is not None and complete:
            on_rows(blocks.grid, blocks.values[: complete * blocks.frames].reshape(complete, -1))
    return blocks.result()


def _numpy(column: Any) -> np.ndarray:
    """A column as a numpy array (zero-copy where Arrow can; nulls NaN for floats)."""
    return np.asarray(column.to_numpy(zero_copy_only=False))


class _Blocks:
    """Batches checked against the block layout as they come; the values kept."""

    def __init__(self, capacity: int) -> None:
        self.values = np.empty(capacity)  # pages are touched only as rows arrive
        self.rows = 0
        self.frames = 0
        self.grid = np.zeros(0)
        self.fovs: list[np.ndarray] = []  # each block's fov and cell, batch by batch
        self.cells: list[np.ndarray] = []
        self.open_block = np.zeros(2, dtype=np.int64)  # fov, cell of the last block begun
        self.nan_values = 0

    def feed(self, batch: Any) -> bool:
        """Check one batch and keep its values; False once the layout does not hold."""
        size = batch.num_rows
        if size == 0:
            return True
        columns = [batch.column(k) for k in ("time", "fov", "cell", "value")]
        if not self._plain(*columns) or self.rows + size > self.values.size:
            return False
        time, fov, cell = (_numpy(c) for c in columns[:3])
        if not self.frames and not self._learn_grid(time, fov, cell):
            return False
        skip = self.rows % self.frames
        starts = -self.rows % self.frames  # the first row of a block in this batch
        # the ids of the blocks this batch's rows are in: the block still open from the
        # batch before (when the batch starts inside it), then those it starts
        fov_b, cell_b = fov[starts :: self.frames], cell[starts :: self.frames]
        self.fovs.append(fov_b)
        self.cells.append(cell_b)
        if skip:
            fov_b = np.concatenate([self.open_block[:1], fov_b])
            cell_b = np.concatenate([self.open_block[1:], cell_b])
        # each row's block and place on the grid by repeating (indexing costs more)
        for per_block, column in ((fov_b, fov), (cell_b, cell)):
            if not (np.repeat(per_block, self.frames)[skip : skip + size] == column).all():
                return False  # a block holds another trace's rows
        on_grid = np.tile(self.grid, fov_b.size)[skip : skip + size]
        if not (on_grid == time).all():
            return False  # a block misses a frame, or has other times
        self.open_block = np.array([fov_b[-1], cell_b[-1]])
        value = columns[3]
        if pa.types.is_null(value.type):
            self.values[self.rows : self.rows + size] = np.nan
            self.nan_values += size
        else:
            numbers = _numpy(value)
            self.values[self.rows : self.rows + size] = numbers
            self.nan_values += int(np.count_nonzero(np.isnan(numbers)))
        self.rows += size
        return True

    @staticmethod
    def _plain(time: Any, fov: Any, cell: Any, value: Any) -> bool:
        """Columns this path reads: integer ids and finite times, none missing, and
        values that are numbers and not infinite (the general reader reports the rest)."""
        if not (pa.types.is_integer(fov.type) and pa.types.is_integer(cell.type)):
            return False
        if not pa.types.is_floating(time.type) and not pa.types.is_integer(time.type):
            return False
        if fov.null_count or cell.null_count or time.null_count:
            return False
        if pa.types.is_null(value.type):
            return True
        if not (pa.types.is_floating(value.type) or pa.types.is_integer(value.type)):
            return False
        return not (pa.types.is_floating(value.type) and pc.any(pc.is_inf(value)).as_py())

    def _learn_grid(self, time: np.ndarray, fov: np.ndarray, cell: np.ndarray) -> bool:
        """The frames of a block and their times, from the first trace's rows: they
        must end within the first batch, on finite, increasing times."""
        other = (fov != fov[0]) | (cell != cell[0])
        frames = int(np.argmax(other))
        if not other[frames]:
            return False
        grid = time[:frames].astype(np.float64)
        if not (np.isfinite(grid).all() and (np.diff(grid) > 0).all()):
            return False
        self.frames, self.grid = frames, grid
        return True

    def result(self) -> Blocked | None:
        """The traces, once every batch is in; None when the rows end inside a block,
        or the blocks are not in strictly increasing (fov, cell) order."""
        if not self.frames or self.rows % self.frames:
            return None
        fov, cell = np.concatenate(self.fovs), np.concatenate(self.cells)
        same_fov = fov[1:] == fov[:-1]
        if not ((fov[1:] > fov[:-1]) | (same_fov & (cell[1:] > cell[:-1]))).all():
            return None
        y = self.values[: self.rows].reshape(-1, self.frames)
        return Blocked(self.grid, y, fov, cell, self.nan_values)
