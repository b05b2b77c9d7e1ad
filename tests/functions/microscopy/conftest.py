"""Shared synthetic data for the microscopy tests (generated once per session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.microscopy.synthetic import write_timelapse
from tests.support.fixtures import REAL


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real fixtures not found at {REAL}")
    return REAL


@pytest.fixture(scope="session")
def synthetic_512(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two FOVs of 60 frames at 512², with ground truth."""
    out = tmp_path_factory.mktemp("syn512")
    paths = write_timelapse(out, fovs=2, frames=60, size=512, seed=11)
    return {"paths": paths, "truth": json.loads(paths.truth.read_text()), "dir": out}
