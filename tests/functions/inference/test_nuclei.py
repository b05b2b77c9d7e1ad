"""nuclei-he on tiles (no jobs): accuracy on a tile, the halved first octave against
HistomicsTK's full-resolution one, the tissue mask against the truth, reads from the
best level; and the GPU path against the CPU path (marked gpu)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.arrays import gpu_available
from functions.inference.engine import run_tiles
from functions.inference.nuclei_he import NucleiHE, NucleiHEParams, declaration
from functions.inference.stains import reinhard_stats
from functions.inference.synthetic_layout import plan_layout
from functions.inference.tiling import SlideReader, TileGrid
from functions.inference.tissue import sample_tissue_pixels, tissue_mask
from tests.functions.inference.conftest import Truth
from tests.functions.inference.scoring import match


@pytest.fixture(scope="module")
def setup(
    he_slide: tuple[Path, Truth],
) -> tuple[SlideReader, TileGrid, object, tuple[object, object]]:
    reader = SlideReader(he_slide[0])
    io = declaration()
    grid = TileGrid(*reader.dimensions, scale=1.0, tile=io.tile, overlap=io.overlap)
    tissue = tissue_mask(reader, 0.5)
    stats = reinhard_stats(sample_tissue_pixels(reader, grid, tissue, tissue.touching(grid)))
    return reader, grid, tissue, stats


def detect(setup: tuple, params: NucleiHEParams, device: str = "cpu") -> object:  # type: ignore[type-arg]
    reader, grid, tissue, stats = setup
    model = NucleiHE(params, *stats, device=device)  # type: ignore[arg-type]
    return run_tiles(model, reader, grid, [(1, 1)], tissue=tissue, confidence_threshold=0.5)


def in_tile(points: np.ndarray, margin: float = 60) -> np.ndarray:
    lo, hi = 944 + margin, 944 + 1024 - margin
    return (points[:, 0] > lo) & (points[:, 0] < hi) & (points[:, 1] > lo) & (points[:, 1] < hi)


def test_a_tile_matches_the_truth(setup: tuple, he_slide: tuple[Path, Truth]) -> None:  # type: ignore[type-arg]
    truth = he_slide[1]
    found = detect(setup, NucleiHEParams())
    c = found.centroid  # type: ignore[attr-defined]
    score = match(
        truth.centroids[in_tile(truth.centroids)],
        truth.radius[in_tile(truth.centroids)],
        c[in_tile(c)],
    )
    assert score.f1 >= 0.9
    assert ((found.confidence >= 0.5) & (found.confidence <= 1)).all()  # type: ignore[attr-defined]
    m = found.measurements  # type: ignore[attr-defined]
    assert (m["eccentricity"] >= 0).all() and (m["eccentricity"] < 1).all()
    assert (m["solidity"] > 0.5).all() and (m["solidity"] <= 1).all()
    assert (m["mean_hematoxylin"] < 60).mean() > 0.9  # nuclei are the dark hematoxylin


def test_the_halved_first_octave_finds_the_same_nuclei(setup: tuple) -> None:  # type: ignore[type-arg]
    full = detect(setup, NucleiHEParams(first_octave=0)).centroid  # type: ignore[attr-defined]
    half = detect(setup, NucleiHEParams(first_octave=1)).centroid  # type: ignore[attr-defined]
    from scipy.spatial import cKDTree

    d, _ = cKDTree(half).query(full)
    assert abs(len(full) - len(half)) <= 0.02 * len(full)
    assert (d <= 2.0).mean() >= 0.95


def test_the_tissue_mask_is_the_true_tissue(setup: tuple, he_slide: tuple[Path, Truth]) -> None:  # type: ignore[type-arg]
    _, _, tissue, _ = setup
    truth = he_slide[1]
    layout = plan_layout(2048, 2048, truth.meta["seed"])
    yy, xx = np.mgrid[0:2048:8, 0:2048:8] + 4
    real = layout.in_tissue(xx, yy)
    seen = tissue.contains(xx, yy)  # type: ignore[attr-defined]
    assert (real & seen).sum() / (real | seen).sum() > 0.93
    assert tissue.area_mm2() == pytest.approx(truth.meta["tissue_area_mm2"], rel=0.05)  # type: ignore[attr-defined]
    region = tissue_mask(setup[0], 0.5, polygon=[(0, 0), (1024, 0), (0, 1024)])
    assert not region.contains(np.array([900.0]), np.array([900.0]))[0]
    assert region.area_mm2() < 0.5 * tissue.area_mm2()  # type: ignore[attr-defined]


def test_a_coarse_model_reads_a_coarse_level(he_slide: tuple[Path, Truth]) -> None:
    with SlideReader(he_slide[0]) as reader:
        grid = TileGrid(*reader.dimensions, scale=4.0, tile=256, overlap=0)  # 2 µm/px
        tile = reader.read_tile(grid, 1, 1)
        assert tile.shape == (256, 256, 3) and reader.reads == [0, 1]
        grid = TileGrid(*reader.dimensions, scale=2.0, tile=256, overlap=0)  # 1 µm/px
        assert reader.read_tile(grid, 0, 0).shape == (256, 256, 3) and reader.reads[0] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with cupy and cucim")
def test_the_gpu_finds_the_nuclei_the_cpu_finds(setup: tuple) -> None:  # type: ignore[type-arg]
    """Tolerance: the same count within 1 %, 99 % of nuclei within 1 px, areas within
    2 % (float32 Gaussians on two devices differ in the last bits, which can move a
    seed or a watershed line by a pixel)."""
    cpu = detect(setup, NucleiHEParams(), "cpu")
    gpu = detect(setup, NucleiHEParams(), "gpu")
    from scipy.spatial import cKDTree

    assert abs(len(cpu) - len(gpu)) <= 0.01 * len(cpu)  # type: ignore[arg-type]
    d, j = cKDTree(gpu.centroid).query(cpu.centroid)  # type: ignore[attr-defined]
    assert (d <= 1.0).mean() >= 0.99
    close = d <= 1.0
    ratio = gpu.area_um2[j[close]] / cpu.area_um2[close]  # type: ignore[attr-defined]
    assert np.median(np.abs(ratio - 1)) <= 0.02
