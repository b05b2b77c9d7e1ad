"""One batch of frames of one FOV: segment, label, track, correct background, measure.

The phase channel's mask is labelled on the host inside a zero border (the labels are
then the padded image :class:`~functions.microscopy.foreground.Foreground` works on,
with no copy); tracking and shape features work on the labels' runs; each
fluorescence channel's background is fitted to the batch, subtracted, judged and
measured under the labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from functions.microscopy.background import estimate_background, subtract_background
from functions.microscopy.background_fit import auto_step, background_pixels, fit_surface
from functions.microscopy.background_quality import (
    QualityLog,
    block_residuals,
    region_residuals,
)
from functions.microscopy.extraction import (
    FLUORESCENCE_FEATURES,
    PHASE_FEATURES,
    foreground_intensity_features,
    shape_features,
)
from functions.microscopy.foreground import Foreground, Runs
from functions.microscopy.readers import Reader
from functions.microscopy.segmentation import segment_logstd
from functions.microscopy.traces import feature_column
from functions.microscopy.tracking import IoUTracker

if TYPE_CHECKING:
    from functions.microscopy.pipeline import WorkflowOptions


def process_batch(
    reader: Reader,
    fov: int,
    start: int,
    stop: int,
    opts: WorkflowOptions,
    be: Any,
    tracker: IoUTracker,
    quality: dict[int, QualityLog],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    phase = be.asarray(reader.read(fov, opts.phase_channel, start, stop, z=opts.z))
    mask = segment_logstd(
        phase,
        size=opts.logstd_size,
        bins=opts.histogram_bins,
        n_std=opts.threshold_n_std,
        structure_size=opts.structure_size,
        iterations=opts.morphology_iterations,
        backend=be,
    )
    del phase
    fg = _label(be.to_numpy(mask))
    lut = _track(fg, tracker)
    shape = shape_features(fg)
    present = shape["area"] > 0
    present[0] = False
    part: dict[str, np.ndarray] = {
        "fov": np.full(int(present.sum()), fov, dtype=np.int64),
        "cell": lut[present],
        "frame": shape["frame"][present] + start,
    }
    for key in ("position_x", "position_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
        part[key] = shape[key][present]
    for name in PHASE_FEATURES:
        part[feature_column(name, opts.phase_channel)] = shape[name][present]
    _, height, width = mask.shape
    step = opts.median_step or auto_step(height, width)
    keep = background_pixels(mask, dilation=opts.mask_dilation, step=step, backend=be)
    index = be.asarray(fg.unpadded_index)
    for ch in opts.fluorescence_channels:
        raw = be.asarray(reader.read(fov, ch, start, stop, z=opts.z))
        bg, level, residual = _background(raw, mask, keep, step, opts, be)
        quality[ch].add(residual, level)
        # I - w·B only where a cell is: the features never look anywhere else
        at = be.to_numpy(
            subtract_background(
                raw.reshape(-1)[index],
                bg.reshape(-1)[index],
                weight=opts.background_weight,
                backend=be,
            )
        )
        del raw, bg
        stats = foreground_intensity_features(fg, at, erosion=opts.erosion)
        for name in FLUORESCENCE_FEATURES:
            part[feature_column(name, ch)] = stats[name][present]
    return part, _track_labels(fg, lut)


def _track_labels(fg: Foreground, lut: np.ndarray) -> np.ndarray:
    """The batch's label frames renumbered with track ids, uint32: written at the
    foreground pixels only (a third of a dense frame) rather than looked up at all; the
    ids looked up once per run and repeated along it (a tenth of a per-pixel gather)."""
    out = np.zeros(fg.shape, dtype=np.uint32)
    runs = fg.runs
    out.reshape(-1)[fg.unpadded_index] = np.repeat(lut.astype(np.uint32)[runs.label], runs.length)
    return out


def _label(mask: np.ndarray) -> Foreground:
    """Connected components (8-connected, per frame) labelled inside a zero border.

    Numbered as scipy numbers them, in scan order, so each frame's labels are one
    contiguous range, which :func:`_track` relies on.
    """
    return Foreground.from_mask(mask)


def _background(
    raw: Any, mask: Any, keep: Any, step: int, opts: WorkflowOptions, be: Any
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The background surface of a batch of one channel, each frame's mean level and
    the surface's region residuals (:mod:`functions.microscopy.background_quality`)."""
    if opts.background_method == "fit":
        fit = fit_surface(
            raw,
            keep,
            step=step,
            block=opts.tile_size,
            intervals=opts.background_knots,
            window=opts.background_window,
            backend=be,
        )
        return fit.surface, fit.level, block_residuals(fit, keep.shape[1:])[0]
    bg = estimate_background(
        raw,
        mask,
        tile=opts.tile_size or 256,
        dilation=opts.mask_dilation,
        sample_step=step,
        backend=be,
    )
    level = be.to_numpy(bg[:, ::8, ::8].mean(axis=(1, 2), dtype=be.xp.float64))
    return bg, level, region_residuals(raw, bg, keep, step=step, backend=be)[0]


def _track(fg: Foreground, tracker: IoUTracker) -> np.ndarray:
    """Track ids of every component of a batch, frame by frame, from their runs."""
    runs = fg.runs
    lut = np.zeros(fg.n + 1, dtype=np.int64)
    bounds = np.searchsorted(runs.frame, np.arange(fg.shape[0] + 1))
    for lo_run, hi_run in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        part = runs.select(slice(lo_run, hi_run))
        if not len(part):
            tracker.update_runs(part, 0)
            continue
        lo, hi = int(part.label.min()), int(part.label.max())
        local = Runs(part.frame, part.row, part.start, part.stop, part.label - (lo - 1))
        ids = tracker.update_runs(local, hi - lo + 1)
        lut[lo : hi + 1] = ids[1:]
    return lut
