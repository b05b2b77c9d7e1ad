"""ONNX models: graphs built in-process run over a synthetic slide through real jobs
and find the expected objects (segmentation, detection, classification); a file that
is not a model and graphs that disagree with their declaration are refused with
InvalidInput naming the mismatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.errors import InvalidInput
from common.jobs import JobRecord, Status
from common.jobs.service import JobService
from functions.inference.onnx_model import validate_onnx
from functions.inference.params import OnnxModelSpec
from functions.inference.wkb import decode_polygon
from tests.functions.inference import onnx_graphs
from tests.functions.inference.conftest import Truth, file_bytes, run_job, store_file
from tests.functions.inference.scoring import match

BOX = {"x0": 256, "y0": 512, "x1": 1280, "y1": 1536}


def spec(
    kind: str,
    classes: list[str],
    file_id: str = "00000000-0000-0000-0000-000000000000",
    **input_: Any,
) -> dict[str, Any]:
    return {
        "kind": "onnx",
        "file_id": file_id,
        "name": f"test-{kind}",
        "input": {"size": 256, "mpp": 0.5, **input_},
        "output": {"kind": kind, "classes": classes},
    }


def test_a_file_that_is_not_a_model_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a valid ONNX model"):
        validate_onnx(
            b"\x08\x07 certainly not protobuf" * 10,
            OnnxModelSpec.model_validate(spec("segmentation", ["n"])),
        )


@pytest.mark.parametrize(
    ("declared", "graph", "message"),
    [
        (
            spec("segmentation", ["n"], size=512),
            onnx_graphs.segmentation_model(),
            r"dimension 2 \(tile size\) is 256, the declaration says 512",
        ),
        (
            spec("segmentation", ["a", "b"]),
            onnx_graphs.segmentation_model(),
            r"dimension 1 \(classes\) is 1, the declaration says 2",
        ),
        (
            spec("segmentation", ["n"], layout="NHWC"),
            onnx_graphs.segmentation_model(),
            r"dimension 3 \(channels\) is 256, the declaration says 3",
        ),
        (
            spec("segmentation", ["n"], dtype="uint8"),
            onnx_graphs.segmentation_model(),
            r"is tensor\(float\), the declaration says uint8",
        ),
        (
            spec("detection", ["n", "m"]),
            onnx_graphs.detection_model(),
            r"dimension 2 \(4 box coordinates \+ class scores\) is 5, the declaration says 6",
        ),
        (spec("classification", ["n"]), onnx_graphs.segmentation_model(), "classification needs"),
        (spec("detection", ["n"]), onnx_graphs.classification_model(), "detection needs"),
    ],
)
def test_a_graph_that_disagrees_with_its_declaration_is_refused(
    declared: dict[str, Any], graph: bytes, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_onnx(graph, OnnxModelSpec.model_validate(declared))


@pytest.mark.parametrize(
    ("declared", "graph"),
    [
        (spec("segmentation", ["nucleus"]), onnx_graphs.segmentation_model()),
        (spec("detection", ["nucleus"]), onnx_graphs.detection_model()),
        (spec("classification", ["dense", "sparse"]), onnx_graphs.classification_model()),
    ],
)
def test_matching_graphs_are_accepted(declared: dict[str, Any], graph: bytes) -> None:
    validate_onnx(graph, OnnxModelSpec.model_validate(declared))


def run_onnx(
    pool: JobService, slide: Path, graph: bytes, declared: dict[str, Any], tmp: Path
) -> tuple[JobRecord, Any]:
    model_path = tmp / "model.onnx"
    model_path.write_bytes(graph)
    declared = {**declared, "file_id": str(store_file(pool, model_path).id)}
    slide_id = str(store_file(pool, slide).id)
    job = run_job(
        pool,
        "inference.slide",
        {"file_id": slide_id, "model": declared, "region": {"bbox": BOX}, "tiles_per_region": 16},
    )
    assert job.status is Status.succeeded, job.error
    assert job.result is not None
    out = tmp / "objects.parquet"
    out.write_bytes(file_bytes(pool, job.result["parquet_file_id"]))
    return job, pq.read_table(out)


def inside_box(truth: Truth, margin: float = 12) -> np.ndarray:
    c = truth.centroids
    return (
        (c[:, 0] > BOX["x0"] + margin)
        & (c[:, 0] < BOX["x1"] - margin)
        & (c[:, 1] > BOX["y0"] + margin)
        & (c[:, 1] < BOX["y1"] - margin)
    )


def centroids(table: Any) -> np.ndarray:
    return np.stack([table["centroid_x"].to_numpy(), table["centroid_y"].to_numpy()], 1)


@pytest.mark.slow
def test_a_segmentation_graph_finds_the_nuclei(
    pool: JobService, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    slide, truth = he_slide
    declared = spec("segmentation", ["nucleus"])
    declared["output"]["split"] = "watershed"
    job, table = run_onnx(pool, slide, onnx_graphs.segmentation_model(), declared, tmp_path)
    assert job.result is not None and job.result["summary"]["regions"] > 1  # fanned out
    found = centroids(table)
    keep = (
        (found[:, 0] > BOX["x0"] + 12)
        & (found[:, 0] < BOX["x1"] - 12)
        & (found[:, 1] > BOX["y0"] + 12)
        & (found[:, 1] < BOX["y1"] - 12)
    )
    wanted = inside_box(truth)
    score = match(truth.centroids[wanted], truth.radius[wanted], found[keep])
    assert score.f1 >= 0.8, (score.precision, score.recall)
    assert set(table["class"].to_pylist()) == {"nucleus"}
    conf = table["confidence"].to_numpy()
    assert conf.min() >= 0.5 and conf.max() <= 1
    from scipy.spatial import cKDTree

    assert len(cKDTree(found).query_pairs(3.0)) == 0  # seams: each object once


@pytest.mark.slow
def test_a_detection_graph_finds_boxes_on_the_nuclei(
    pool: JobService, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    slide, truth = he_slide
    _, table = run_onnx(
        pool, slide, onnx_graphs.detection_model(), spec("detection", ["nucleus"]), tmp_path
    )
    found = centroids(table)
    keep = (
        (found[:, 0] > BOX["x0"] + 12)
        & (found[:, 0] < BOX["x1"] - 12)
        & (found[:, 1] > BOX["y0"] + 12)
        & (found[:, 1] < BOX["y1"] - 12)
    )
    wanted = inside_box(truth)
    score = match(truth.centroids[wanted], truth.radius[wanted], found[keep])
    assert score.f1 >= 0.8, (score.precision, score.recall)
    ring = decode_polygon(table["polygon"][0].as_py())
    assert (
        len(ring) == 5
        and np.ptp(ring[:, 0]) == pytest.approx(16)
        and np.ptp(ring[:, 1]) == pytest.approx(16)
    )
    assert table["measurements"][0].as_py()["score"] == pytest.approx(
        table["confidence"][0].as_py(), abs=1e-6
    )


@pytest.mark.slow
def test_a_classification_graph_paints_tile_cores(
    pool: JobService, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    slide, _ = he_slide
    declared = spec("classification", ["dense", "sparse"])
    declared["input"]["overlap"] = 32
    _, table = run_onnx(pool, slide, onnx_graphs.classification_model(), declared, tmp_path)
    rings = [decode_polygon(w) for w in table["polygon"].to_pylist()]
    boxes = np.array([[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()] for r in rings])
    assert len(rings) >= 9
    # cores meet without overlapping: pairwise intersections have no area
    for i in range(len(boxes)):
        w = np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0])
        h = np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1])
        overlap = np.clip(w, 0, None) * np.clip(h, 0, None)
        overlap[i] = 0
        assert overlap.max() == 0
    m = table["measurements"].to_pylist()
    total = np.array([r["probability_dense"] + r["probability_sparse"] for r in m])
    assert np.allclose(total, 1, atol=1e-5)
    best = np.maximum([r["probability_dense"] for r in m], [r["probability_sparse"] for r in m])
    assert np.allclose(table["confidence"].to_numpy(), best, atol=1e-6)
