"""Slides for the slide tests: the real fixtures and small synthetic SVS files."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.slides.synthetic import write_synthetic_slide
from tests.support.fixtures import REAL


@pytest.fixture(scope="session")
def real() -> Path:
    return REAL


@pytest.fixture(scope="session")
def boxes() -> Path:
    return REAL / "boxes.tiff"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Odd sizes, so level downsamples are not whole numbers (4.003..., 16.06...)."""
    path = tmp_path_factory.mktemp("slides") / "synthetic.svs"
    return write_synthetic_slide(path, width=1501, height=1103, levels=3, seed=3)


@pytest.fixture(scope="session")
def tidy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sizes that are multiples of the tile size at every level: stored tiles line up."""
    path = tmp_path_factory.mktemp("slides") / "tidy.svs"
    return write_synthetic_slide(path, width=4096, height=3072, levels=3, seed=5)
