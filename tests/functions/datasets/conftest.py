"""Synthetic slides and time-lapses for the dataset-build tests, and the real job pool
(worker processes, database, directory store) of the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.inference.synthetic import write_he_slide
from tests.functions.inference.conftest import he_slide, pool  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def small_slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 1,024² synthetic H&E slides (0.5 µm/px), different seeds."""
    out = tmp_path_factory.mktemp("build-slides")
    return [
        write_he_slide(out / f"he-{seed}.svs", width=1024, height=1024, seed=seed, levels=2)[0]
        for seed in (2, 3, 4)
    ]
