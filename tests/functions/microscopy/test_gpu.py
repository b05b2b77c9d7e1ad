"""GPU kernels equal the CPU ones within stated tolerances (skipped without cupy)."""

from __future__ import annotations

import numpy as np
import pytest

from common.arrays import get_backend, gpu_available
from functions.microscopy.background import estimate_background
from functions.microscopy.segmentation import local_logstd, segment_logstd

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
