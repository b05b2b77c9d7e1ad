"""Time-lapse crops from a workflow's results through real jobs: a crop per tracked
cell and frame, centred on the cell (mask centroid within 1 px of the centre), pixels
equal to the frame's, metadata equal to the traces table's row."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from common.jobs import Status
from common.jobs.service import JobService
from functions.datasets.params import BuildParams
from functions.datasets.plan import plan_build
from functions.microscopy.readers import open_reader
from functions.microscopy.synthetic import write_timelapse
from tests.functions.datasets.wdsload import load
from tests.functions.inference.conftest import file_bytes, run_job, store_file


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_crops_are_centred_on_tracked_cells_with_their_traces(
    pool: JobService, tmp_path: Path
) -> None:
    paths = write_timelapse(tmp_path / "movie", fovs=1, frames=8, size=256, seed=3)
    movie = store_file(pool, paths.image)
    options = {"min_length": 3, "border_margin": 4}
    workflow = run_job(pool, "workflow", {"file_id": str(movie.id), "options": options})
    assert workflow.status is Status.succeeded, workflow.error
    ds = pool.runtime.datasets.create(owner_id=None, name="movies")
    pool.runtime.datasets.add_files(ds.id, [movie.id])
    spec = BuildParams.model_validate(
        {
            "dataset_id": str(ds.id),
            "crops": {"size": 64, "channels": [0, 1], "mask": True},
            "split": {"train": 1, "validation": 0, "test": 0},
        }
    )
    planned = plan_build(pool.runtime, None, spec)
    assert planned.planned and planned.planned[0].workflow_id == workflow.id
    job = run_job(pool, "datasets.build", planned.model_dump(mode="json"))
    assert job.status is Status.succeeded, job.error
    assert job.result is not None
    shards = []
    for i in job.result["shard_file_ids"]:
        shards.append(tmp_path / f"{i}.tar")
        shards[-1].write_bytes(file_bytes(pool, i))
    samples = load(shards, "ch0.png", "ch1.png", "mask.png", "json", decode=[])
    assert workflow.result is not None
    traces_id = workflow.result["fovs"][0]["traces_parquet"]
    traces = pq.read_table(io.BytesIO(file_bytes(pool, traces_id))).to_pylist()
    rows = {(r["cell"], r["frame"]): r for r in traces if r["good"]}
    assert len(samples) == len(rows) > 5
    with open_reader(paths.image) as reader:
        frames = {c: reader.read(0, c, 0, 8) for c in (0, 1)}
    for ch0, ch1, mask, meta in samples:
        row = rows[(meta["cell"], meta["frame"])]
        assert meta["fov"] == row["fov"] == 0 and meta["time"] == row["time"]
        for name, value in meta["features"].items():
            assert value == (pytest.approx(row[name]) if value is not None else value)
        cell = _png(mask) > 0
        assert cell.any()
        yy, xx = np.nonzero(cell)
        # the mask's centroid is the traces' position: within 1 px of the crop's centre
        assert abs(xx.mean() + meta["x"] - row["position_x"]) <= 1.0
        assert abs(yy.mean() + meta["y"] - row["position_y"]) <= 1.0
        assert abs(xx.mean() - 32) <= 1 and abs(yy.mean() - 32) <= 1
        for c, data in ((0, ch0), (1, ch1)):
            x0, y0 = meta["x"], meta["y"]
            want = frames[c][meta["frame"], max(y0, 0) : y0 + 64, max(x0, 0) : x0 + 64]
            got = _png(data)[max(-y0, 0) :, max(-x0, 0) :][: want.shape[0], : want.shape[1]]
            np.testing.assert_array_equal(got.astype(want.dtype), want)
    assert uuid.UUID(str(job.result["manifest_parquet_file_id"]))
