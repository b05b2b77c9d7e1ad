"""Per-FOV workflow: segment, correct background, track, extract, filter — in frame batches.

Frames are read in batches of about ``batch_pixels`` pixels, so a FOV is never held in
memory whole; only the tracker's last few frames and the (small) per-cell rows persist
between batches. The label stack is streamed to a zlib-compressed TIFF as it is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from threadpoolctl import threadpool_limits

from common.arrays import get_backend
from functions.microscopy.background_quality import QualityLog
from functions.microscopy.extraction import FLUORESCENCE_FEATURES, PHASE_FEATURES
from functions.microscopy.filters import flag_traces, summarise
from functions.microscopy.fov_batch import process_batch
from functions.microscopy.readers import Reader
from functions.microscopy.traces import build_table, feature_column, write_table
from functions.microscopy.tracking import IoUTracker


class WorkflowOptions(BaseModel):
    """Every tunable of the per-FOV workflow, with PyAMA's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase_channel: int = Field(default=0, ge=0)
    fluorescence_channels: list[int] = Field(default_factory=lambda: [1])
    z: int = Field(default=0, ge=0, description="z plane to analyse")
    # segmentation
    logstd_size: int = Field(default=3, ge=1)
    histogram_bins: int = Field(default=200, ge=2)
    threshold_n_std: float = 3.0
    structure_size: int = Field(default=7, ge=1)
    morphology_iterations: int = Field(default=3, ge=1)
    # background
    background_method: Literal["fit", "pyama"] = Field(
        default="fit",
        description="fit: a smooth spline fitted to masked block means (unbiased at any "
        "frame size); pyama: PyAMA's spline through 256-px tile medians (reference)",
    )
    tile_size: int | None = Field(
        default=None,
        ge=2,
        description="block side (fit) or tile side (pyama) in px; None: 1/32 of the "
        "frame's shorter side, up to 1/16 (at most 32 px) below 1024 px, 4-64 px (fit); "
        "256 (pyama)",
    )
    background_knots: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="knot intervals per axis of the fitted surface; None: from the frame "
        "size (one per 64 px, 1-6)",
    )
    background_window: int = Field(
        default=8,
        ge=1,
        description="consecutive frames of a batch fitted together, the surface varying "
        "linearly in time within them",
    )
    mask_dilation: int = Field(default=21, ge=0)
    background_weight: float = Field(default=1.0, ge=0.0, le=1.0)
    median_step: int | None = Field(
        default=None,
        ge=1,
        description="pixel step of the background statistics; None: 1 for frames up to "
        "512 x 512 px, else 2",
    )
    background_threshold: float = Field(
        default=0.01,
        gt=0.0,
        description="flag frames where the background residual of a region exceeds this "
        "fraction of the background level",
    )
    # tracking
    min_iou: float = Field(default=0.1, gt=0.0, le=1.0)
    max_gap: int = Field(default=2, ge=0)
    # extraction and filters
    erosion: int = Field(default=0, ge=0, description="erode masks by this many px for totals")
    min_length: int = Field(default=30, ge=0)
    border_margin: int = Field(default=50, ge=0)
    phase_features: list[str] | None = Field(
        default=None, description="phase features to keep in the traces; all when None"
    )
    fluorescence_features: list[list[str]] | None = Field(
        default=None,
        description="features to keep per fluorescence channel (in the order "
        "of fluorescence_channels); all when None",
    )
    # execution
    batch_pixels: int = Field(default=2**20, ge=1, description="pixels per frame batch")
    device: Literal["cpu", "gpu", "auto"] = "cpu"

    @model_validator(mode="after")
    def _channels_differ(self) -> WorkflowOptions:
        if self.phase_channel in self.fluorescence_channels:
            raise ValueError("the phase channel cannot also be a fluorescence channel")
        if len(set(self.fluorescence_channels)) != len(self.fluorescence_channels):
            raise ValueError("fluorescence_channels has duplicates")
        picks = [(self.phase_features or [], PHASE_FEATURES)]
        if self.fluorescence_features is not None:
            if len(self.fluorescence_features) != len(self.fluorescence_channels):
                raise ValueError("fluorescence_features needs one list per fluorescence channel")
            picks += [(names, FLUORESCENCE_FEATURES) for names in self.fluorescence_features]
        for names, known in picks:
            if set(names) - set(known):
                raise ValueError(
                    f"unknown features {sorted(set(names) - set(known))}; known: {sorted(known)}"
                )
        return self

    def dropped_columns(self) -> set[str]:
        """Feature columns the selection leaves out of the traces."""
        out = set()
        if self.phase_features is not None:
            out |= {
                feature_column(n, self.phase_channel)
                for n in PHASE_FEATURES
                if n not in self.phase_features
            }
        for ch, names in zip(
            self.fluorescence_channels, self.fluorescence_features or [], strict=False
        ):
            out |= {feature_column(n, ch) for n in FLUORESCENCE_FEATURES if n not in names}
        return out


@dataclass
class FovResult:
    """What one FOV produced: the traces table, artefact paths and a summary."""

    fov: int
    table: Any  # pyarrow.Table
    csv: Path
    parquet: Path
    labels: Path
    summary: dict[str, Any] = field(default_factory=dict)


def run_fov(
    reader: Reader,
    fov: int,
    out_dir: str | Path,
    options: WorkflowOptions | None = None,
    *,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FovResult:
    """Run the whole workflow on one FOV of an open reader.

    Parameters
    ----------
    reader : Reader
        From :func:`functions.microscopy.readers.open_reader`.
    fov : int
        FOV index.
    out_dir : path
        Receives ``fov_<fov>_traces.{csv,parquet}`` and ``fov_<fov>_labels.tif``.
    options : WorkflowOptions, optional
    progress : callable(fraction, message), optional
        Called after every frame batch.
    cancelled : callable() -> bool, optional
        Checked before every batch; when true, raises ``common.errors.JobCancelled``.

    Returns
    -------
    result : FovResult
    """
    opts = options or WorkflowOptions()
    meta = reader.metadata
    _validate(meta, fov, opts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    be = get_backend(opts.device)
    tracker = IoUTracker(min_iou=opts.min_iou, max_gap=opts.max_gap)
    batch = max(1, min(meta.n_frames, opts.batch_pixels // (meta.height * meta.width)))
    parts: list[dict[str, np.ndarray]] = []
    quality = {ch: QualityLog(opts.background_threshold) for ch in opts.fluorescence_channels}
    labels_path = out / f"fov_{fov:03d}_labels.tif"
    import tifffile

    def label_frames() -> Any:
        for start in range(0, meta.n_frames, batch):
            if cancelled is not None and cancelled():
                from common.errors import JobCancelled

                raise JobCancelled()
            stop = min(start + batch, meta.n_frames)
            part, track_labels = process_batch(reader, fov, start, stop, opts, be, tracker, quality)
            parts.append(part)
            if progress is not None:  # before yielding: the writer stops after the last frame
                progress(stop / meta.n_frames, f"FOV {fov}: frames {stop}/{meta.n_frames}")
            for frame in track_labels:
                yield _deflate(frame)

    # one series of T pages, written as the batches are made, each page one deflate
    # strip; one BLAS thread: a FOV runs on one core (FOVs run in parallel), and the
    # small products of the background fit are 100x slower when BLAS threads contend
    with (
        threadpool_limits(limits=1, user_api="blas"),
        tifffile.TiffWriter(labels_path, bigtiff=True) as labels_out,
    ):
        labels_out.write(
            label_frames(),
            shape=(meta.n_frames, meta.height, meta.width),
            dtype=np.uint32,
            photometric="minisblack",
            compression="zlib",
            rowsperstrip=meta.height,
        )
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    columns["time"] = np.asarray(meta.timepoints, dtype=np.float64)[columns["frame"]]
    good, reason = flag_traces(
        columns["cell"],
        (columns["bbox_y0"], columns["bbox_x0"], columns["bbox_y1"], columns["bbox_x1"]),
        height=meta.height,
        width=meta.width,
        min_length=opts.min_length,
        border_margin=opts.border_margin,
    )
    columns["good"], columns["filter_reason"] = good, reason.astype(str)
    for name in opts.dropped_columns():
        del columns[name]
    table = build_table(columns)
    csv_path, parquet_path = write_table(table, out / f"fov_{fov:03d}_traces")
    summary = {
        "fov": fov,
        "frames": meta.n_frames,
        **summarise(columns["cell"], good, reason),
        "time_units": meta.time_units,
        "background": _background_summary(opts, quality),
    }
    return FovResult(fov, table, csv_path, parquet_path, labels_path, summary)


def _deflate(frame: np.ndarray) -> bytes:
    """One label frame as a TIFF deflate strip. zlib-ng at level 1 writes the same
    format 5x faster than libdeflate or zlib (what tifffile would use); label images are
    long runs, so the strips stay small (~80 KB for 1024² with a hundred cells)."""
    import imagecodecs

    data: Any = np.ascontiguousarray(frame)  # any buffer: no copy to bytes first
    if getattr(getattr(imagecodecs, "ZLIBNG", None), "available", False):
        return bytes(imagecodecs.zlibng_encode(data, level=1))
    return bytes(imagecodecs.zlib_encode(data, level=1))


def _validate(meta: Any, fov: int, opts: WorkflowOptions) -> None:
    channels = [opts.phase_channel, *opts.fluorescence_channels]
    if not 0 <= fov < meta.n_fovs:
        raise ValueError(f"fov {fov} outside 0..{meta.n_fovs - 1}")
    if max(channels) >= meta.n_channels:
        raise ValueError(f"channels {channels} outside 0..{meta.n_channels - 1}")
    if opts.z >= meta.n_z:
        raise ValueError(f"z {opts.z} outside 0..{meta.n_z - 1}")


def _background_summary(opts: WorkflowOptions, quality: dict[int, QualityLog]) -> dict[str, Any]:
    channels = {str(ch): log.summary() for ch, log in quality.items()}
    return {
        "method": opts.background_method,
        "threshold": opts.background_threshold,
        "flagged": any(c["flagged_frames"] for c in channels.values()),
        "channels": channels,
    }
