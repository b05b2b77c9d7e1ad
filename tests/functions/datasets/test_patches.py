"""Slide patches (the kernel of `datasets.build`): on tissue above the fraction, pixels
equal to a direct read at the resolution (exact for PNG, within JPEG's error), from the
best pyramid level, labelled by the objects whose centroids fall inside; loaded back
with the `webdataset` package."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from functions.datasets.labels import Objects, Polygons
from functions.datasets.params import OutputSpec, PatchSpec
from functions.datasets.patches import geometry, read_patch
from functions.datasets.shards import TarSink
from functions.datasets.slide_part import slide_samples
from functions.inference.synthetic_layout import plan_layout
from functions.inference.tiling import SlideReader
from tests.functions.datasets.wdsload import load
from tests.functions.inference.conftest import Truth


def _build(
    slide: Path, tmp: Path, spec: PatchSpec, output: OutputSpec, labels: Any = None
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    tar = tmp / "part.tar"
    with TarSink(tar) as sink:
        n = slide_samples(slide, spec, output, sink, prefix="s00000", base={}, labels=labels)
    ext = "jpg" if output.format == "jpeg" else "png"
    samples = load([tar], ext, "json")
    assert len(samples) == n > 0
    return samples


def _tissue_fraction(layout: Any, meta: dict[str, Any]) -> float:
    steps = (np.arange(16) + 0.5) / 16 * meta["extent"]
    yy, xx = np.meshgrid(meta["y"] + steps, meta["x"] + steps, indexing="ij")
    return float(layout.in_tissue(xx.ravel(), yy.ravel()).mean())


@pytest.mark.parametrize(("mpp", "level"), [(0.5, 0), (1.0, 0), (2.0, 1)])
def test_png_patches_lie_on_tissue_and_equal_a_direct_read(
    he_slide: tuple[Path, Truth], tmp_path: Path, mpp: float, level: int
) -> None:
    slide, truth = he_slide
    spec = PatchSpec(size=64, mpp=mpp, min_tissue=0.6)
    samples = _build(slide, tmp_path, spec, OutputSpec(format="png"))
    layout = plan_layout(truth.meta["width"], truth.meta["height"], truth.meta["seed"])
    with SlideReader(slide) as reader:
        geom = geometry(reader.downsamples, 0.5, 64, mpp)
        assert geom.level == level  # 2 µm/px comes from the 4x level, not level 0
        for pixels, meta in samples:
            assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
            assert meta["level"] == level and meta["tissue"] >= 0.6
            # the synthetic layout's own tissue, not our mask, says it lies on tissue
            assert _tissue_fraction(layout, meta) >= 0.45
            np.testing.assert_array_equal(pixels, read_patch(reader, geom, meta["x"], meta["y"]))


def test_jpeg_patches_match_within_jpeg_error_and_samples_are_seeded(
    he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    slide, _ = he_slide
    spec = PatchSpec(size=128, mpp=1.0, sample=5, seed=3, min_tissue=0.5)
    samples = _build(slide, tmp_path, spec, OutputSpec(format="jpeg", quality=95))
    again = _build(slide, tmp_path, spec, OutputSpec(format="jpeg", quality=95))
    other = _build(slide, tmp_path, spec.model_copy(update={"seed": 4}), OutputSpec(format="jpeg"))
    assert len(samples) == 5
    assert [m["x"] for _, m in samples] == [m["x"] for _, m in again]
    assert [m["x"] for _, m in samples] != [m["x"] for _, m in other]
    with SlideReader(slide) as reader:
        geom = geometry(reader.downsamples, 0.5, 128, 1.0)
        for pixels, meta in samples:
            direct = read_patch(reader, geom, meta["x"], meta["y"]).astype(float)
            assert np.abs(pixels.astype(float) - direct).mean() < 3.0


def test_labels_count_the_objects_whose_centroids_fall_inside(
    he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    slide, truth = he_slide
    classes = np.where(np.arange(len(truth.centroids)) % 3 == 0, "tumour", "stroma")
    path = tmp_path / "objects.parquet"
    pq.write_table(
        pa.table(
            {
                "class": classes,
                "centroid_x": truth.centroids[:, 0],
                "centroid_y": truth.centroids[:, 1],
            }
        ),
        path,
    )
    spec = PatchSpec(size=128, mpp=1.0, min_tissue=0.5)
    samples = _build(slide, tmp_path, spec, OutputSpec(), labels=Objects.from_parquet(path))
    total = 0
    for _, meta in samples:
        cx, cy = truth.centroids[:, 0], truth.centroids[:, 1]
        inside = (
            (cx >= meta["x"]) & (cx < meta["x"] + 256) & (cy >= meta["y"]) & (cy < meta["y"] + 256)
        )
        want = {c: int((classes[inside] == c).sum()) for c in ("tumour", "stroma")}
        assert meta["counts"] == {c: n for c, n in want.items() if n}
        assert len(meta["objects"]) == inside.sum()
        for x, y, _name in meta["objects"]:
            assert 0 <= x < 128 and 0 <= y < 128
        total += int(inside.sum())
    assert total > 100


def test_geojson_polygons_label_the_patches_they_touch() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[10, 10], [50, 10], [50, 40], [10, 10]]],
                },
                "properties": {"classification": {"name": "tumour"}},
            },
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[300, 300], [310, 300], [310, 310], [300, 300]]],
                },
                "properties": {"class": "necrosis"},
            },
        ],
    }
    import json

    polygons = Polygons.from_geojson(json.dumps(doc).encode())
    hit = polygons.in_box(0, 0, 100, 2.0)
    assert hit["counts"] == {"tumour": 1}
    assert hit["polygons"][0]["points"][1] == [25.0, 5.0]  # (50, 10) at 2 px per patch px
    assert polygons.in_box(250, 250, 100, 1.0)["counts"] == {"necrosis": 1}
    assert polygons.in_box(500, 500, 100, 1.0)["counts"] == {}


def test_png_images_decode_back_exactly() -> None:
    from functions.datasets.shards import encode

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (32, 32), dtype=np.uint16)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode(rgb, "png")))), rgb)
    back = np.asarray(Image.open(io.BytesIO(encode(gray16, "png"))))
    np.testing.assert_array_equal(back.astype(np.uint16), gray16)


def test_a_region_keeps_patches_inside_it_and_geojson_labels_them(
    he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    import json

    slide, _ = he_slide
    region = [(512.0, 512.0), (1536.0, 512.0), (1536.0, 1536.0), (512.0, 1536.0)]
    doc = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[600, 600], [700, 600], [700, 700]]]},
        "properties": {"classification": {"name": "tumour"}},
    }
    labels = Polygons.from_geojson(json.dumps(doc).encode())
    spec = PatchSpec(size=64, mpp=1.0, min_tissue=0.5, region=region)
    samples = _build(slide, tmp_path, spec, OutputSpec(), labels=labels)
    whole = _build(slide, tmp_path, spec.model_copy(update={"region": None}), OutputSpec())
    assert 0 < len(samples) < len(whole)
    for _, meta in samples:
        assert meta["x"] >= 512 - 64 and meta["x"] + 128 <= 1536 + 64
        assert meta["y"] >= 512 - 64 and meta["y"] + 128 <= 1536 + 64
        touches = (
            meta["x"] <= 700
            and meta["x"] + 128 > 600
            and meta["y"] <= 700
            and meta["y"] + 128 > 600
        )
        assert meta["counts"] == ({"tumour": 1} if touches else {})
    assert any(m["counts"] for _, m in samples)
