"""The GPU path gives the CPU's answers (skipped without cupy and a CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest

from common.arrays import gpu_available
from functions.fitting.fit import fit_traces
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with cupy"),
]


@pytest.mark.parametrize("model", ["maturation", "trivial", "hill"])
def test_gpu_fit_matches_cpu(model: str) -> None:
    s = synthetic_traces(model, n=300, noise=0.02, missing=0.05, ragged=True, seed=12)
    spec = resolve_spec(model)
    cpu = fit_traces(spec, s.t, s.y, device="cpu")
    gpu = fit_traces(spec, s.t, s.y, device="gpu")
    assert gpu.device == "gpu"
    np.testing.assert_array_equal(gpu.status, cpu.status)
    # Same algorithm in float64; reductions may sum in another order, so the two runs
    # can differ by rounding that convergence tests amplify: costs agree to 1e-6.
    both = cpu.success & gpu.success
    np.testing.assert_allclose(gpu.ss_res[both], cpu.ss_res[both], rtol=1e-6)
    np.testing.assert_allclose(gpu.r_squared[both], cpu.r_squared[both], atol=1e-8)
