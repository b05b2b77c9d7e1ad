"""GPU kernels equal the CPU ones within stated tolerances (skipped without cupy), and
the workflow on the GPU has the CPU's fluorescence accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.arrays import get_backend, gpu_available
from functions.microscopy.background import estimate_background
from functions.microscopy.background_fit import background_pixels, fit_background
from functions.microscopy.background_quality import region_residuals
from functions.microscopy.pipeline import WorkflowOptions, run_fov
from functions.microscopy.readers import open_reader
from functions.microscopy.segmentation import local_logstd, segment_logstd
from functions.microscopy.synthetic import write_timelapse
from tests.functions.microscopy.truth import accuracy_figures, match_truth

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with cupy"),
]


def frames() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    phase = rng.poisson(1000, (4, 300, 520)).astype(np.uint16)
    phase[:, 100:160, 100:160] += rng.integers(0, 600, (4, 60, 60)).astype(np.uint16)
    fluo = rng.poisson(200, phase.shape).astype(np.uint16)
    return phase, fluo


def test_logstd_and_mask_match_cpu() -> None:
    gpu = get_backend("gpu")
    phase, _ = frames()
    cpu_ls = local_logstd(phase)
    gpu_ls = gpu.to_numpy(local_logstd(gpu.asarray(phase), backend=gpu))
    np.testing.assert_allclose(gpu_ls, cpu_ls, atol=1e-4)
    cpu_mask = segment_logstd(phase)
    gpu_mask = gpu.to_numpy(segment_logstd(gpu.asarray(phase), backend=gpu))
    assert (cpu_mask != gpu_mask).mean() < 1e-4  # threshold ties at float32 rounding


def test_background_matches_cpu() -> None:
    gpu = get_backend("gpu")
    phase, fluo = frames()
    cells = segment_logstd(phase)
    cpu_bg = estimate_background(fluo, cells)
    gpu_bg = gpu.to_numpy(estimate_background(gpu.asarray(fluo), gpu.asarray(cells), backend=gpu))
    np.testing.assert_allclose(gpu_bg, cpu_bg, atol=1e-3)


def test_fitted_background_and_its_quality_match_cpu() -> None:
    """Block sums are exact on both; the surface differs by float32 GEMM rounding only:
    within 1e-3 counts (1e-5 of a 100-count background)."""
    gpu = get_backend("gpu")
    phase, fluo = frames()
    cells = segment_logstd(phase)
    keep = background_pixels(cells, step=2)
    gpu_keep = background_pixels(gpu.asarray(cells), step=2, backend=gpu)
    np.testing.assert_array_equal(gpu.to_numpy(gpu_keep), keep)
    cpu_surface, cpu_level = fit_background(fluo, keep, step=2, window=4)
    gpu_surface, gpu_level = fit_background(
        gpu.asarray(fluo), gpu_keep, step=2, window=4, backend=gpu
    )
    np.testing.assert_allclose(gpu.to_numpy(gpu_surface), cpu_surface, atol=1e-3)
    np.testing.assert_allclose(gpu_level, cpu_level, rtol=1e-9)
    cpu_res, _ = region_residuals(fluo, cpu_surface, keep, step=2)
    gpu_res, _ = region_residuals(gpu.asarray(fluo), gpu_surface, gpu_keep, step=2, backend=gpu)
    np.testing.assert_allclose(gpu_res, cpu_res, atol=1e-3, equal_nan=True)


def test_workflow_on_gpu_has_the_cpu_accuracy(tmp_path: Path) -> None:
    """The whole FOV on the hard scene: every cell's intensity_total within 1e-4 of the
    CPU's (float32 rounding, threshold ties in the segmentation aside), and the same
    acceptance figures."""
    paths = write_timelapse(tmp_path, fovs=1, frames=12, size=512, seed=3, scene="hard")
    truth = json.loads(paths.truth.read_text())["fovs"][0]["cells"]
    with open_reader(paths.image) as reader:
        cpu = run_fov(reader, 0, tmp_path / "cpu", WorkflowOptions(device="cpu"))
        gpu = run_fov(reader, 0, tmp_path / "gpu", WorkflowOptions(device="gpu"))
    assert cpu.table.num_rows == gpu.table.num_rows
    a = cpu.table["intensity_total_ch_1"].to_numpy()
    b = gpu.table["intensity_total_ch_1"].to_numpy()
    assert np.median(np.abs(a - b) / np.abs(a).clip(1)) < 1e-4
    for result in (cpu, gpu):
        figures = accuracy_figures(match_truth(result.table, truth)["signed_error"])
        assert figures["median_abs_pct"] <= 2.0 and figures["p90_abs_pct"] <= 5.0
    assert gpu.summary["background"]["flagged"] is False
