"""Merge per-FOV traces into one long CSV per sample, feature and channel."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidInput

_FEATURE_COLUMN = re.compile(r"^(?P<feature>.+)_ch_(?P<channel>\d+)$")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_fov_spec(spec: str | Iterable[int], *, n_fovs: int | None = None) -> list[int]:
    """FOV indices from a spec such as ``"0-5, 7, 9-11"`` or a list of ints.

    Parameters
    ----------
    spec : str or iterable of int
    n_fovs : int, optional
        When given, every index must be below it.

    Returns
    -------
    fovs : list of int
        Sorted, without duplicates.

    Raises
    ------
    InvalidInput
        Malformed ranges, negative or reversed ranges, out-of-range or empty specs.

    Examples
    --------
    >>> parse_fov_spec("0-2, 5")
    [0, 1, 2, 5]
    """
    out: set[int] = set()
    if isinstance(spec, str):
        for part in spec.split(","):
            m = _RANGE.match(part)
            if m is None:
                raise InvalidInput(f"invalid FOV spec {spec!r}: {part.strip()!r} is not N or N-M")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise InvalidInput(f"invalid FOV spec {spec!r}: range {lo}-{hi} is reversed")
            out.update(range(lo, hi + 1))
    else:
        for v in spec:
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise InvalidInput(f"invalid FOV list: {v!r} is not a non-negative integer")
            out.add(int(v))
    if not out:
        raise InvalidInput("the FOV spec selects no FOV")
    if n_fovs is not None and max(out) >= n_fovs:
        raise InvalidInput(f"FOV {max(out)} does not exist (the file has {n_fovs})")
    return sorted(out)


def feature_columns(names: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(column, feature, channel)`` of every ``<feature>_ch_<id>`` column."""
    out = []
    for name in names:
        m = _FEATURE_COLUMN.match(name)
        if m:
            out.append((name, m.group("feature"), int(m.group("channel"))))
    return out


def merge_samples(
    tables: Sequence[Any],
    samples: Mapping[str, str | Sequence[int]],
    out_dir: str | Path,
    *,
    features: Sequence[str] | None = None,
) -> list[Path]:
    """Write one ``<sample>_<feature>_ch_<id>.csv`` per sample, feature and channel.

    Each file starts with ``# Time units: min`` then ``time,fov,cell,value`` rows of good
    cells only, sorted by FOV, cell and time.

    Parameters
    ----------
    tables : sequence of pyarrow.Table
        Traces tables (any number of FOVs each, told apart by their ``fov`` column).
    samples : dict
        Sample name -> FOV spec (see :func:`parse_fov_spec`).
    out_dir : path
    features : sequence of str, optional
        Feature names to merge (all when omitted).

    Returns
    -------
    paths : list of Path
    """
    import pyarrow as pa

    if not tables:
        raise InvalidInput("no traces tables to merge")
    for name in samples:
        if not name or "/" in name or name.startswith("."):
            raise InvalidInput(f"invalid sample name {name!r}")
    table = pa.concat_tables(tables, promote_options="default")
    columns = feature_columns(table.column_names)
    if features is not None:
        unknown = set(features) - {f for _, f, _ in columns}
        if unknown:
            raise InvalidInput(f"unknown features {sorted(unknown)}")
        columns = [c for c in columns if c[1] in set(features)]
    fov = table["fov"].to_numpy()
    good = table["good"].to_numpy(zero_copy_only=False).astype(bool)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample, spec in samples.items():
        chosen = parse_fov_spec(spec)
        missing = sorted(set(chosen) - set(np.unique(fov).tolist()))
        if missing:
            raise InvalidInput(f"sample {sample!r}: no traces for FOVs {missing}")
        rows = np.flatnonzero(np.isin(fov, chosen) & good)
        sub = table.take(pa.array(rows))
        order = np.lexsort((sub["time"].to_numpy(), sub["cell"].to_numpy(), sub["fov"].to_numpy()))
        sub = sub.take(pa.array(order))
        for column, feature, channel in columns:
            path = out / f"{sample}_{feature}_ch_{channel}.csv"
            _write_long(path, sub, column)
            paths.append(path)
    return paths


def _write_long(path: Path, table: Any, column: str) -> None:
    import pyarrow as pa

    from functions.microscopy.traces import write_csv

    long = pa.table(
        {"time": table["time"], "fov": table["fov"], "cell": table["cell"], "value": table[column]}
    )
    with open(path, "wb") as fh:
        fh.write(b"# Time units: min\n")
        write_csv(long, fh)
