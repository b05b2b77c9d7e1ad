"""The synthetic H&E generator: a pyramidal SVS OpenSlide opens at 0.5 µm/px, H&E
colours where the truth says, a truth file that matches the layout, strips that meet
seamlessly, and `aperture demo-data he-slide`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openslide
import pytest

from functions.inference.synthetic import MARGIN, STRIP, _textures, render_strip
from functions.inference.synthetic_layout import plan_layout
from infra.cli import main
from tests.functions.inference.conftest import Truth


def test_the_slide_is_a_pyramid_openslide_reads_at_half_a_micron(
    he_slide: tuple[Path, Truth],
) -> None:
    path, truth = he_slide
    slide = openslide.OpenSlide(str(path))
    assert slide.dimensions == (2048, 2048)
    assert float(slide.properties["openslide.mpp-x"]) == 0.5
    assert slide.properties["openslide.objective-power"] == "20"
    assert slide.level_count >= 2 and slide.level_downsamples[1] == pytest.approx(4)
    assert truth.meta["mpp"] == 0.5 and truth.meta["count"] == len(truth.centroids) > 1000


def test_pixels_follow_the_truth(he_slide: tuple[Path, Truth]) -> None:
    path, truth = he_slide
    slide = openslide.OpenSlide(str(path))
    layout = plan_layout(2048, 2048, truth.meta["seed"])
    rgb = np.asarray(slide.read_region((0, 0), 0, (2048, 2048)).convert("RGB")).astype(int)
    x, y = np.round(truth.centroids).astype(int).T
    nuclei = rgb[y, x]
    assert (nuclei.sum(1) < 520).mean() > 0.98  # darker than stroma (~650) at centres
    assert (nuclei[:, 2] > nuclei[:, 1]).all()  # blue over green: hematoxylin
    yy, xx = np.mgrid[4:2048:16, 4:2048:16]
    glass = ~layout.in_tissue(xx - 12, yy - 12) & ~layout.in_tissue(xx + 12, yy + 12)
    glass &= ~layout.in_tissue(xx, yy)
    assert (rgb[yy[glass], xx[glass]].min(axis=1) > 225).mean() > 0.98  # white glass


def test_truth_outlines_hold_their_centroids_and_areas(he_slide: tuple[Path, Truth]) -> None:
    _, truth = he_slide
    radius = truth.radius
    assert radius.min() > 5 and radius.max() < 13
    assert np.allclose(truth.area_px, np.pi * radius**2, rtol=1e-3)
    spans = np.array([np.ptp(o, axis=0).max() for o in truth.outlines])
    assert (spans > 2 * radius * 0.9).all()
    # touching clusters exist: some nuclei within 1.05 x the sum of their radii
    from scipy.spatial import cKDTree

    pairs = cKDTree(truth.centroids).query_pairs(2 * 13, output_type="ndarray")
    d = np.hypot(*(truth.centroids[pairs[:, 0]] - truth.centroids[pairs[:, 1]]).T)
    touching = d < 1.05 * (radius[pairs[:, 0]] + radius[pairs[:, 1]])
    assert touching.sum() > 20


def test_strips_meet_without_seams() -> None:
    layout = plan_layout(600, 1200, seed=4)
    textures = _textures(4)
    everything = list(range(len(layout.outlines)))
    whole = render_strip(layout, 0, 1200, everything, textures, 4).astype(int)
    parts = np.vstack(
        [
            render_strip(layout, y, min(y + STRIP, 1200), everything, textures, 4)
            for y in range(0, 1200, STRIP)
        ]
    ).astype(int)
    # same scene; only the per-strip noise differs (its seed is the strip's first row)
    assert np.abs(whole - parts).mean() < 3.0
    assert MARGIN > 0


def test_the_same_seed_gives_the_same_slide(tmp_path: Path) -> None:
    a = plan_layout(512, 512, seed=9)
    b = plan_layout(512, 512, seed=9)
    assert len(a.outlines) == len(b.outlines) and all(
        np.array_equal(p, q) for p, q in zip(a.outlines, b.outlines, strict=True)
    )
    assert len(plan_layout(512, 512, seed=10).outlines) != len(a.outlines) or not np.array_equal(
        plan_layout(512, 512, seed=10).outlines[0], a.outlines[0]
    )


def test_demo_data_writes_an_he_slide_and_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "he.svs"
    code = main(
        ["demo-data", "he-slide", str(out), "--width", "700", "--height", "600", "--seed", "2"]
    )
    assert code == 0
    assert capsys.readouterr().out.split() == [str(out), str(tmp_path / "he.truth.json")]
    slide = openslide.OpenSlide(str(out))
    assert slide.dimensions == (700, 600)
    truth = json.loads((tmp_path / "he.truth.json").read_text())
    assert truth["width"] == 700 and truth["count"] == len(truth["nuclei"]) > 50
    first = truth["nuclei"][0]
    assert set(first) == {
        "id",
        "centroid",
        "outline",
        "area_px",
        "area_um2",
        "equivalent_radius_px",
    }
    assert first["area_um2"] == pytest.approx(first["area_px"] * 0.25, rel=1e-3)


def test_demo_data_refuses_an_he_slide_that_is_not_a_tiff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo-data", "he-slide", str(tmp_path / "he.png")]) == 1
    assert "he.png: a slide is written as" in capsys.readouterr().err
    assert not (tmp_path / "he.png").exists()
