"""Benchmark: the whole per-FOV microscopy pipeline against uniform_filter passes.

Run: ``uv run python tests/bench/bench_workflow.py [--sizes 512 1024 2048] [--frames 60]``.
For each frame size it writes one synthetic FOV (two channels) and prints one JSON line:
frames/s for one worker, peak traced memory of the pipeline, and the pipeline's time as
a number of ``scipy.ndimage.uniform_filter(size=3)`` passes over the same stack (each
channel's float32 ``(T, Y, X)`` stack, both channels), measured in the same run.
Reference: PyAMA costs ~77 such passes per FOV; goal <= 7.5, and peak memory below one
float32 copy of the FOV's stack per channel.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from functions.microscopy.pipeline import WorkflowOptions, run_fov
from functions.microscopy.readers import open_reader
from functions.microscopy.synthetic import write_timelapse


def reference_seconds(path: Path, frames: int) -> float:
    """One uniform_filter(size=3) pass over each channel's float32 stack (best of 2)."""
    from scipy import ndimage

    best = np.inf
    with open_reader(path) as reader:
        stacks = [reader.read(0, c, 0, frames).astype(np.float32) for c in range(2)]
    for _ in range(2):
        t0 = time.perf_counter()
        for s in stacks:
            ndimage.uniform_filter(s, size=3)
        best = min(best, time.perf_counter() - t0)
    return best


def warm_up(workdir: Path) -> None:
    """Import-time costs are paid once per worker process, not per FOV: pay them here."""
    paths = write_timelapse(workdir / "warm", fovs=1, frames=4, size=128, seed=0)
    with open_reader(paths.image) as reader:
        run_fov(reader, 0, workdir / "warm-out")


def bench(size: int, frames: int, workdir: Path) -> dict[str, object]:
    paths = write_timelapse(workdir / f"s{size}", fovs=1, frames=frames, size=size, seed=1)
    ref = reference_seconds(paths.image, frames)
    opts = WorkflowOptions(min_length=frames // 2)
    with open_reader(paths.image) as reader:
        t0 = time.perf_counter()
        result = run_fov(reader, 0, workdir / f"out{size}", opts)
        elapsed = time.perf_counter() - t0
        tracemalloc.start()
        run_fov(reader, 0, workdir / f"mem{size}", opts)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    stack_mib = frames * size * size * 4 / 2**20
    return {
        "bench": "workflow.fov",
        "size": size,
        "frames": frames,
        "channels": 2,
        "cells": result.summary["cells_found"],
        "pipeline_s": round(elapsed, 3),
        "frames_per_s_per_worker": round(frames / elapsed, 2),
        "reference": "scipy.ndimage.uniform_filter(size=3) over each channel's float32 "
        "(T, Y, X) stack",
        "reference_s": round(ref, 3),
        "passes_per_fov": round(elapsed / ref, 2),
        "goal_passes": 7.5,
        "pyama_passes": 77,
        "peak_mib": round(peak / 2**20, 1),
        "stack_f32_per_channel_mib": round(stack_mib, 1),
        "peak_over_stack_f32_per_channel": round(peak / 2**20 / stack_mib, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as tmp:
        warm_up(Path(tmp))
        for size in args.sizes:
            print(json.dumps(bench(size, args.frames, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
