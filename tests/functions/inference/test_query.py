"""Viewport queries against a brute-force filter; the merge's duplicate pass; the
GeoJSON they stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.errors import InvalidInput
from functions.inference.merge import merge_regions
from functions.inference.objects import Objects
from functions.inference.outputs import objects_table
from functions.inference.query import open_objects, select_rows, viewport_geojson
from functions.inference.seams import duplicates, polygon_iou
from functions.inference.wkb import decode_polygon

CLASSES = ("tumor", "immune")
COLORS = {"tumor": "#d63f2f", "immune": "#2f6fd6"}


def random_objects(
    n: int,
    size: float,
    seed: int,
    tile: tuple[int, int],
    x_range: tuple[float, float] | None = None,
) -> Objects:
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, size, (n, 2))
    if x_range is not None:  # a region: a band of the slide
        centre[:, 0] = rng.uniform(*x_range, n)
    half = rng.uniform(3, 12, (n, 1))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    polygons = [c + half[i] * corners for i, c in enumerate(centre)]
    area = (2 * half[:, 0]) ** 2 * 0.25
    return Objects(
        polygons=polygons,
        centroid=centre,
        confidence=rng.uniform(0, 1, n).astype(np.float32),
        label=rng.integers(0, 2, n).astype(np.int16),
        area_um2=area,
        measurements={"centroid_x": centre[:, 0], "centroid_y": centre[:, 1], "area_um2": area},
        tile=np.tile(np.array(tile, np.int32), (n, 1)),
    )


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("query")
    regions = []
    for i in range(3):
        table = objects_table(
            random_objects(8000, 20_000, i, (i, 0), (i * 6667, (i + 1) * 6667)),
            CLASSES,
            ("centroid_x", "centroid_y", "area_um2"),
        )
        regions.append(tmp / f"r{i}.parquet")
        pq.write_table(table, regions[-1])
    report = merge_regions(regions, tmp / "out.parquet", tmp / "out.geojson", COLORS)
    assert report.objects + report.duplicates == 24_000 and report.duplicates < 10
    return tmp / "out.parquet"


def brute(
    table: object, bbox: tuple[float, ...], conf: float, classes: set[str] | None
) -> set[int]:
    t = pq.read_table(table)  # type: ignore[arg-type]
    x0, y0, x1, y1 = bbox
    keep = (t["x_min"].to_numpy() < x1) & (t["x_max"].to_numpy() > x0)
    keep &= (t["y_min"].to_numpy() < y1) & (t["y_max"].to_numpy() > y0)
    keep &= t["confidence"].to_numpy() >= np.float32(conf)
    if classes is not None:
        keep &= np.isin(t["class"].to_pylist(), list(classes))
    return set(np.asarray(t["id"].to_pylist())[keep].tolist())


@pytest.mark.parametrize("seed", range(6))
def test_a_viewport_returns_exactly_the_objects_a_full_scan_finds(merged: Path, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    x0, y0 = rng.uniform(-500, 18_000, 2)
    bbox = (x0, y0, x0 + rng.uniform(50, 4000), y0 + rng.uniform(50, 4000))
    conf = [0.0, 0.3, 0.9][seed % 3]
    classes = [None, {"tumor"}, {"immune", "tumor"}][seed % 3]
    got = [
        i
        for t in select_rows(merged, bbox=bbox, min_confidence=conf, classes=classes)
        for i in t["id"].to_pylist()
    ]
    assert len(got) == len(set(got))
    assert set(got) == brute(merged, bbox, conf, classes)
    for key in (None, "merged", "merged"):  # uncached, first cached, cached footer reused
        body = json.loads(
            b"".join(
                viewport_geojson(
                    merged, bbox=bbox, min_confidence=conf, classes=classes, cache_key=key
                )
            )
        )
        assert {f["properties"]["object_id"] for f in body["features"]} == set(got)


def test_a_viewport_reads_few_row_groups(merged: Path) -> None:
    _, index = open_objects(merged)
    b = index.bounds
    x0, y0, x1, y1 = 9000, 9000, 11_000, 11_000
    hit = (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
    assert len(b) >= 10 and hit.sum() <= len(b) // 3


def test_limit_and_features(merged: Path) -> None:
    bbox = (0.0, 0.0, 20_000.0, 20_000.0)
    body = json.loads(b"".join(viewport_geojson(merged, bbox=bbox, limit=7)))
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 7
    feature = body["features"][0]
    props = feature["properties"]
    assert props["objectType"] == "detection" and props["classification"]["name"] in CLASSES
    assert props["classification"]["color"] in ([214, 63, 47], [47, 111, 214])
    assert set(props["measurements"]) == {"centroid_x", "centroid_y", "area_um2"}
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert json.loads(b"".join(viewport_geojson(merged, bbox=(-10.0, -10.0, -5.0, -5.0)))) == {
        "type": "FeatureCollection",
        "features": [],
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bbox": (10.0, 0.0, 5.0, 20.0)}, "bbox"),
        ({"bbox": (0.0, 0.0, float("nan"), 20.0)}, "bbox"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"limit": -1}, "limit"),
    ],
)
def test_bad_queries_are_invalid_input(
    merged: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        viewport_geojson(merged, **kwargs)  # type: ignore[arg-type]


def test_duplicates_keep_the_most_confident_of_overlapping_objects_from_different_tiles() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    polygons = [square, square + 1, square + 0.5, square + 30]
    assert polygon_iou(square, square + 1) > 0.5
    centroids = np.array([p.mean(0) for p in polygons])
    bboxes = np.array([[*p.min(0), *p.max(0)] for p in polygons])
    confidence = np.array([0.6, 0.9, 0.7, 0.5])
    tiles = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])
    drop = duplicates(centroids, bboxes, confidence, tiles, lambda i: polygons[i])
    # 1 (tile 1, 0.9) beats 0 and 2 (tile 0); 0 and 2 share a tile, so they never compete
    assert drop.tolist() == [0, 2]


def test_merge_drops_cross_region_duplicates(tmp_path: Path) -> None:
    a = random_objects(50, 2000, 1, (0, 0))
    b = a.select(np.arange(10))
    b.tile = np.tile(np.array([1, 0], np.int32), (10, 1))
    b.confidence = a.confidence[:10] + 0.01
    paths = []
    for i, o in enumerate((a, b)):
        paths.append(tmp_path / f"{i}.parquet")
        pq.write_table(
            objects_table(o, CLASSES, ("centroid_x", "centroid_y", "area_um2")), paths[-1]
        )
    report = merge_regions(paths, tmp_path / "o.parquet", tmp_path / "o.geojson", COLORS)
    assert report.duplicates == 10 and report.objects == 50
    table = pq.read_table(tmp_path / "o.parquet")
    kept = set(zip(table["tile_col"].to_pylist(), table["centroid_x"].to_pylist(), strict=True))
    assert {(1, x) for x in b.centroid[:, 0].tolist()} <= kept
    assert np.allclose(
        decode_polygon(table["polygon"][0].as_py())[0],
        decode_polygon(table["polygon"][0].as_py())[-1],
    )
    features = json.loads((tmp_path / "o.geojson").read_bytes())["features"]
    assert len(features) == 50
    # each feature carries its own row's values (row groups are slices of a table)
    rows = {r["id"]: r for r in table.select(["id", "measurements", "confidence"]).to_pylist()}
    for feature in features:
        props = feature["properties"]
        row = rows[props["object_id"]]
        assert props["measurements"] == pytest.approx(row["measurements"])
        assert props["confidence"] == pytest.approx(row["confidence"], abs=1e-4)
        ring = np.array(feature["geometry"]["coordinates"][0])
        centre = (row["measurements"]["centroid_x"], row["measurements"]["centroid_y"])
        assert ring[:, 0].min() < centre[0] < ring[:, 0].max()


def test_a_viewport_as_parquet_holds_the_same_rows(merged: Path) -> None:
    import io

    from functions.inference.query import viewport_parquet

    bbox = (1000.0, 1000.0, 4000.0, 3000.0)
    data = viewport_parquet(merged, bbox=bbox, min_confidence=0.5, classes={"immune"})
    table = pq.read_table(io.BytesIO(data))
    assert set(table["id"].to_pylist()) == brute(merged, bbox, 0.5, {"immune"})
    assert table.schema.names == pq.read_schema(merged).names


def test_the_model_list_describes_nuclei_he() -> None:
    from functions.inference.params import OnnxModelSpec
    from functions.inference.registry import builtin_models, describe_onnx

    (model,) = builtin_models()
    assert model["name"] == "nuclei-he" and model["mpp"] == 0.5 and model["tile"] == 1024
    assert model["output"] == {"kind": "segmentation", "classes": ["nucleus"]}
    props = model["params_schema"]["properties"]
    assert props["foreground_threshold"]["default"] == 60 and props["min_radius"]["default"] == 6
    assert props["max_radius"]["default"] == 20 and props["min_nucleus_area"]["default"] == 80
    assert props["local_max_search_radius"]["default"] == 10
    spec = OnnxModelSpec.model_validate(
        {
            "file_id": "00000000-0000-0000-0000-000000000001",
            "input": {"size": 256, "mpp": 1.0},
            "output": {"kind": "detection", "classes": ["a", "b"]},
        }
    )
    onnx = describe_onnx(spec)
    assert onnx["overlap"] == 64 and onnx["output"] == {"kind": "detection", "classes": ["a", "b"]}
