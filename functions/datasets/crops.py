"""Single-cell crops of a time-lapse as WebDataset samples: per tracked cell and frame
of a workflow's traces, a square around the cell's centroid in each asked channel
(16-bit PNG, exact), optionally its mask, with fov, cell, frame, time and features."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidInput, JobCancelled
from functions.datasets.params import CropSpec
from functions.datasets.shards import TarSink, encode, json_member

#: Trace columns that place a row rather than describe the cell.
PLACE_COLUMNS = {"fov", "cell", "frame", "time", "good", "filter_reason"}


def crop(frame: np.ndarray, cx: float, cy: float, size: int) -> tuple[np.ndarray, int, int]:
    """The `size` square of `frame` whose centre pixel holds (cx, cy), zero outside the
    frame, and its origin (x0, y0). For an even size the centre is pixel size // 2."""
    x0, y0 = int(np.floor(cx)) - size // 2, int(np.floor(cy)) - size // 2
    out = np.zeros((size, size), frame.dtype)
    h, w = frame.shape
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return out, x0, y0


def _rows_by_frame(table: Any, spec: CropSpec) -> dict[int, list[dict[str, Any]]]:
    rows = table.to_pylist()
    if spec.good_only and "good" in table.column_names:
        rows = [r for r in rows if r["good"]]
    by_cell: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_cell.setdefault(int(r["cell"]), []).append(r)
    frames: dict[int, list[dict[str, Any]]] = {}
    for cell_rows in by_cell.values():
        for r in sorted(cell_rows, key=lambda r: r["frame"])[:: spec.every]:
            frames.setdefault(int(r["frame"]), []).append(r)
    return frames


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON has no such numbers."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _uint16(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels
    return np.clip(np.rint(pixels), 0, 65535).astype(np.uint16)


def fov_samples(
    reader: Any,
    fov: int,
    traces: str | Path,
    labels: str | Path,
    spec: CropSpec,
    *,
    prefix: str,
    base: dict[str, Any],
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, members) of every crop of one FOV, frame by frame (each frame read once).

    Raises
    ------
    InvalidInput
        A channel the file lacks, or traces and labels that do not fit the file.
    """
    import pyarrow.parquet as pq
    import tifffile

    meta = reader.metadata
    if max(spec.channels) >= meta.n_channels:
        raise InvalidInput(f"channel {max(spec.channels)} does not exist ({meta.n_channels})")
    frames = _rows_by_frame(pq.read_table(traces), spec)
    with tifffile.TiffFile(labels) as tif:
        yield from _frames(reader, fov, tif, frames, spec, prefix=prefix, base=base)


def _frames(
    reader: Any,
    fov: int,
    tif: Any,
    frames: dict[int, list[dict[str, Any]]],
    spec: CropSpec,
    *,
    prefix: str,
    base: dict[str, Any],
) -> Iterator[tuple[str, dict[str, bytes]]]:
    meta = reader.metadata
    shape = tif.series[0].shape
    if tuple(shape[-2:]) != (meta.height, meta.width) or shape[0] != meta.n_frames:
        raise InvalidInput(f"label stack {shape} does not fit FOV {fov} of the file")
    for frame in sorted(frames):
        channels = {c: reader.read(fov, c, frame, frame + 1)[0] for c in spec.channels}
        # one page per frame: the stack is zlib-compressed, never read whole
        label_frame = tif.pages[frame].asarray() if spec.mask else None
        for r in frames[frame]:
            cx, cy = float(r["position_x"]), float(r["position_y"])
            members: dict[str, bytes] = {}
            for c, image in channels.items():
                pixels, x0, y0 = crop(image, cx, cy, spec.size)
                members[f"ch{c}.png"] = encode(_uint16(pixels), "png")
            if label_frame is not None:
                ids, x0, y0 = crop(label_frame, cx, cy, spec.size)
                members["mask.png"] = encode(((ids == r["cell"]) * 255).astype(np.uint8), "png")
            key = f"{prefix}-f{fov:03d}-c{int(r['cell']):06d}-t{frame:05d}"
            features = {k: _finite(v) for k, v in r.items() if k not in PLACE_COLUMNS}
            members["json"] = json_member(
                {
                    **base,
                    "key": key,
                    "fov": fov,
                    "cell": int(r["cell"]),
                    "frame": frame,
                    "time": float(r["time"]),
                    "x": x0,
                    "y": y0,
                    "size": spec.size,
                    "channels": spec.channels,
                    "features": features,
                }
            )
            yield key, members


def timelapse_samples(
    path: str | Path,
    fovs: list[tuple[int, Path, Path]],
    spec: CropSpec,
    sink: TarSink,
    *,
    prefix: str,
    base: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Write the crops of every (fov, traces, labels) of the time-lapse at `path`,
    reporting `progress(fovs done, fovs)` after each FOV."""
    from functions.microscopy.readers import open_reader

    done = 0
    with open_reader(path, microscopy_only=True) as reader:
        for i, (fov, traces, labels) in enumerate(fovs):
            for key, members in fov_samples(
                reader, fov, traces, labels, spec, prefix=prefix, base=base
            ):
                if cancelled is not None and done % 64 == 0 and cancelled():
                    raise JobCancelled()
                sink.write(key, members)
                done += 1
            if progress is not None:
                progress(i + 1, len(fovs))
    return done
