"""Trace analysis over HTTP through the real app and worker processes: models,
load-traces (long CSV, wide CSV, Parquet, bad input), fitting start/status/cancel/results,
fan-out into `fitting.chunk` children, ownership and server-path imports."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from common.arrays import gpu_available
from functions.fitting.models import MODELS
from functions.fitting.synthetic import (
    SyntheticTraces,
    synthetic_traces,
    to_long_csv,
    to_wide_csv,
)
from tests.support.app import make_settings, register, signed_in, wait_for_job
from web.app import create_app

API = "/api/v1/analysis"
# 250 maturation traces with 0.2 % noise (of each trace's range). Fitted with the model's
# defaults (t0, ktl, delta, offset free), ktl must come back within 2 % and delta within
# 5 % of the truth on at least 95 % of the traces (the solver tests' tolerances).
N_TRACES = 250
TOLERANCE = {"ktl": 0.02, "delta": 0.05}
RECOVERED = 0.95


@pytest.fixture(scope="module")
def import_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imports")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory, import_root: Path) -> Iterator[TestClient]:
    """The shared real app, with an import root for the file_path tests."""
    settings = make_settings(tmp_path_factory.mktemp("app") / "data", import_roots=[import_root])
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def truth() -> SyntheticTraces:
    return synthetic_traces("maturation", n=N_TRACES, noise=0.002, seed=11)


def _upload(client: TestClient, name: str, data: bytes) -> str:
    response = client.post("/api/v1/files", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _long_parquet(s: SyntheticTraces, *, time_unit: str = "h") -> bytes:
    rows, cols = np.nonzero(np.isfinite(s.y))
    table = pa.table(
        {"time": s.t[cols], "fov": s.fov[rows], "cell": s.cell[rows], "value": s.y[rows, cols]}
    )
    table = table.replace_schema_metadata({"time_units": time_unit})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _problem(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"], response.json()["detail"]


def _download(client: TestClient, file_id: str) -> bytes:
    response = client.get(f"/api/v1/files/{file_id}/download")
    assert response.status_code == 200, response.text
    return response.content


def _fit(client: TestClient, file_id: str, **body: Any) -> dict[str, Any]:
    """Start a fit, wait for it through the status route, and return its results."""
    started = client.post(f"{API}/fitting/start", json={"file_id": file_id, **body})
    assert started.status_code == 202, started.text
    assert started.json()["success"] is True
    assert started.headers["location"] == f"/api/v1/jobs/{started.json()['job_id']}"
    job_id = started.json()["job_id"]
    wait_for_job(client, job_id, timeout=60)
    status = client.get(f"{API}/fitting/status/{job_id}").json()
    assert status["status"] == "succeeded", status
    assert status["progress"] == 1.0
    deadline = time.monotonic() + 60  # the results are there at once; plots follow
    while True:
        results = client.get(f"{API}/fitting/results/{job_id}", params={"limit": 10_000})
        assert results.status_code == 200, results.text
        if results.json()["plots_status"] != "pending":
            return {"job_id": job_id, **results.json()}
        assert time.monotonic() < deadline, "the plots never came"
        time.sleep(0.05)


# --- models and load-traces -------------------------------------------------------------


def test_models_match_the_registry(client: TestClient) -> None:
    models = client.get(f"{API}/models").json()
    assert [m["name"] for m in models] == sorted(MODELS)
    for listed in models:
        model = MODELS[listed["name"]]
        assert listed["equation"] == model.equation and listed["description"]
        assert [p["name"] for p in listed["parameters"]] == list(model.names)
        for p, param in zip(listed["parameters"], model.parameters, strict=True):
            assert p["default"] == param.default and p["unit"] == param.unit
            assert p["bounds"] == [param.lower, param.upper] and p["fixed"] == param.fixed


@pytest.mark.parametrize("layout", ["long-csv", "wide-csv", "parquet"])
def test_load_traces_describes_the_file(client: TestClient, layout: str) -> None:
    s = synthetic_traces("maturation", n=30, n_times=40, missing=0.05, ragged=True, seed=2)
    data = {
        "long-csv": lambda: to_long_csv(s, time_unit="min"),
        "wide-csv": lambda: to_wide_csv(s),
        "parquet": lambda: _long_parquet(s),
    }[layout]()
    file_id = _upload(client, f"traces.{'parquet' if layout == 'parquet' else 'csv'}", data)
    response = client.post(f"{API}/load-traces", json={"file_id": file_id})
    assert response.status_code == 200, response.text
    summary = response.json()
    per_cell = np.isfinite(s.y).sum(axis=1)
    assert summary["file_id"] == file_id and summary["cell_count"] == 30
    assert summary["time_points"] == {
        "min": per_cell.min(),
        "median": np.median(per_cell),
        "max": per_cell.max(),
    }
    assert summary["time_units"] == ("min" if layout == "long-csv" else "h")
    assert summary["value_range"] == pytest.approx([np.nanmin(s.y), np.nanmax(s.y)])
    assert summary["time_range_h"] == pytest.approx([0.0, s.t[np.isfinite(s.y).any(axis=0)].max()])
    # Long files have no row for a missing point; a wide file writes it as an empty cell.
    assert summary["nan_count"] == (int(np.isnan(s.y).sum()) if layout == "wide-csv" else 0)
    assert summary["layout"] == ("wide" if layout == "wide-csv" else "long")
    first = summary["preview"][0]
    assert first["value"] == pytest.approx(s.y[0][np.isfinite(s.y[0])].tolist())


BAD_FILES = [
    (b"", "empty"),
    (b"time,fov,value\n0,0,1\n", "needs columns time,fov,cell,value"),
    (b"time,fov,cell,value\n0,0,0,abc\n", "'value' is not numeric"),
    (b"time,fov,cell,value\n0,0,0,\n1,0,0,nan\n", "has no values"),
    (b"time,fov,cell,value\n0,0,0,inf\n1,0,0,2\n", "infinite"),
    (b"time\n1\n2\n", "expected long format"),
    (b"PAR1 not really parquet inside PAR1", "not a readable Parquet"),
]


@pytest.mark.parametrize(("data", "words"), BAD_FILES)
def test_bad_traces_are_problem_details(client: TestClient, data: bytes, words: str) -> None:
    file_id = _upload(client, "bad.parquet" if data.startswith(b"PAR1") else "bad.csv", data)
    _problem(client.post(f"{API}/load-traces", json={"file_id": file_id}), 422, words)


def test_bad_requests_are_refused(client: TestClient) -> None:
    load = f"{API}/load-traces"
    _problem(client.post(load, json={}), 422, "exactly one of file_id or file_path")
    _problem(
        client.post(load, json={"file_id": str(uuid.uuid4()), "file_path": "/x"}),
        422,
        "exactly one",
    )
    _problem(client.post(load, json={"file_id": str(uuid.uuid4()), "extra": 1}), 422, "extra")
    _problem(client.post(load, json={"file_id": str(uuid.uuid4())}), 404, "no file")


# --- fitting ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traces_file(client: TestClient, truth: SyntheticTraces) -> str:
    return _upload(client, "truth.csv", to_long_csv(truth, time_unit="min"))


@pytest.fixture(scope="module")
def unsplit(client: TestClient, traces_file: str) -> dict[str, Any]:
    return _fit(client, traces_file, model_type="maturation")


def test_fitting_recovers_ground_truth(
    client: TestClient, unsplit: dict[str, Any], truth: SyntheticTraces
) -> None:
    summary = unsplit["summary"]
    assert summary["total"] == N_TRACES and summary["model_type"] == "maturation"
    assert summary["succeeded"] >= RECOVERED * N_TRACES and summary["time_units"] == "min"
    rows = list(csv.DictReader(io.StringIO(_download(client, unsplit["results_file_id"]).decode())))
    names = MODELS["maturation"].names
    assert list(rows[0])[: 5 + len(names)] == [
        "fov",
        "cell",
        "model_type",
        "success",
        "r_squared",
        *names,
    ]
    assert len(rows) == N_TRACES
    assert [(int(r["fov"]), int(r["cell"])) for r in rows] == list(
        zip(truth.fov.tolist(), truth.cell.tolist(), strict=True)
    )
    for name, tol in TOLERANCE.items():
        i = names.index(name)
        got = np.array([float(r[name]) for r in rows])
        within = np.abs(got - truth.params[:, i]) <= tol * np.abs(truth.params[:, i])
        assert within.mean() >= RECOVERED, (name, within.mean())
    table = pq.read_table(io.BytesIO(_download(client, unsplit["parquet_file_id"])))
    assert table.num_rows == N_TRACES and table.column_names[:5] == list(rows[0])[:5]
    assert len(unsplit["plot_file_ids"]) == 3
    for plot_id in unsplit["plot_file_ids"]:
        image = Image.open(io.BytesIO(_download(client, plot_id)))
        image.load()
        assert image.format == "PNG" and image.size[0] > 100


def test_results_are_paginated(client: TestClient, unsplit: dict[str, Any]) -> None:
    url = f"{API}/fitting/results/{unsplit['job_id']}"
    page = client.get(url, params={"limit": 7, "offset": 240}).json()
    assert page["total"] == N_TRACES and page["limit"] == 7 and page["offset"] == 240
    assert page["results"] == unsplit["results"][240:247]
    assert len(client.get(url, params={"offset": 248}).json()["results"]) == 2
    assert len(client.get(url).json()["results"]) == 100
    _problem(client.get(url, params={"limit": -1}), 422, "limit")


def test_fan_out_merges_to_the_unsplit_results(
    client: TestClient, traces_file: str, unsplit: dict[str, Any]
) -> None:
    split = _fit(client, traces_file, model_type="maturation", chunk_size=100)
    children = client.get("/api/v1/jobs", params={"function": "fitting.chunk"}).json()
    mine = [j for j in children["items"] if j["parent_id"] == split["job_id"]]
    assert len(mine) == 3 and all(j["status"] == "succeeded" for j in mine)
    assert split["results"] == unsplit["results"]
    assert split["summary"] == unsplit["summary"]


def test_a_gpu_fitting_job_fits_the_whole_file_in_one_job(
    client: TestClient, traces_file: str, unsplit: dict[str, Any]
) -> None:
    """`fitting.gpu` (what device "gpu" starts) never fans out, and the fitting routes
    serve it. Submitted through the jobs API with device "cpu", it runs here too."""
    params = {
        "file_id": traces_file,
        "model_type": "maturation",
        "device": "cpu",
        "chunk_size": 100,
    }
    job = client.post("/api/v1/jobs", json={"function": "fitting.gpu", "params": params})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert wait_for_job(client, job_id, timeout=60)["status"] == "succeeded"
    children = client.get("/api/v1/jobs", params={"function": "fitting.chunk"}).json()
    assert not [j for j in children["items"] if j["parent_id"] == job_id]
    assert client.get(f"{API}/fitting/status/{job_id}").json()["status"] == "succeeded"
    results = client.get(f"{API}/fitting/results/{job_id}", params={"limit": 10_000}).json()
    assert results["results"] == unsplit["results"]


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_gpu_fits_are_refused_where_there_is_no_gpu(client: TestClient, traces_file: str) -> None:
    before = client.get("/api/v1/jobs", params={"function": "fitting.gpu"}).json()["total"]
    start = f"{API}/fitting/start"
    _problem(client.post(start, json={"file_id": traces_file, "device": "gpu"}), 422, "no GPU")
    assert client.get("/api/v1/jobs", params={"function": "fitting.gpu"}).json()["total"] == before


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with cupy")
def test_device_gpu_fits_on_the_gpu(
    client: TestClient, traces_file: str, unsplit: dict[str, Any]
) -> None:
    started = client.post(f"{API}/fitting/start", json={"file_id": traces_file, "device": "gpu"})
    assert started.status_code == 202, started.text
    job = client.get(f"/api/v1/jobs/{started.json()['job_id']}").json()
    assert job["function"] == "fitting.gpu"
    gpu = _fit(client, traces_file, device="gpu")
    cpu_r2 = np.array([r["r_squared"] for r in unsplit["results"]], dtype=float)
    gpu_r2 = np.array([r["r_squared"] for r in gpu["results"]], dtype=float)
    # the GPU parity of tests/functions/fitting/test_gpu.py, on 99 % of the traces
    assert np.isclose(gpu_r2, cpu_r2, rtol=0, atol=1e-8).mean() >= 0.99


def test_parameters_are_checked_before_a_job_exists(client: TestClient, traces_file: str) -> None:
    before = client.get("/api/v1/jobs", params={"function": "fitting"}).json()["total"]
    start = f"{API}/fitting/start"
    for body, status, words in [
        ({"model_type": "nope"}, 422, "unknown model 'nope'"),
        ({"model_bounds": {"ktl": [10, 1]}}, 422, "lower 10 > upper 1"),
        ({"model_params": {"bogus": 1}}, 422, "unknown parameter 'bogus'"),
        ({"model_params": {"ktl": 0.5}}, 422, "outside its bounds"),
        ({"fixed": ["t0", "ktl", "delta", "offset", "km", "beta", "scale"]}, 422, "nothing to fit"),
        ({"device": "tpu"}, 422, "device"),
        ({"chunk_size": 5}, 422, "chunk_size"),
    ]:
        _problem(client.post(start, json={"file_id": traces_file, **body}), status, words)
    _problem(client.post(start, json={"file_id": str(uuid.uuid4())}), 404, "no file")
    assert client.get("/api/v1/jobs", params={"function": "fitting"}).json()["total"] == before


def test_cancel_stops_a_fit(client: TestClient) -> None:
    s = synthetic_traces("maturation", n=4000, seed=5)
    file_id = _upload(client, "big.parquet", _long_parquet(s))
    started = client.post(f"{API}/fitting/start", json={"file_id": file_id})
    job_id = started.json()["job_id"]
    cancel = client.post(f"{API}/fitting/cancel/{job_id}")
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] in {"cancelling", "cancelled"}
    assert wait_for_job(client, job_id)["status"] == "cancelled"
    _problem(client.get(f"{API}/fitting/results/{job_id}"), 409, "is cancelled")


def test_job_routes_are_owner_only(
    app_client: TestClient, client: TestClient, unsplit: dict[str, Any]
) -> None:
    other = signed_in(app_client, register(app_client))
    job_id = unsplit["job_id"]
    for method, url in [
        ("GET", f"{API}/fitting/status/{job_id}"),
        ("GET", f"{API}/fitting/results/{job_id}"),
        ("POST", f"{API}/fitting/cancel/{job_id}"),
    ]:
        _problem(other.request(method, url), 404, "no job")
    # Their file ids are not usable either, and the job was left alone.
    _problem(
        other.post(f"{API}/load-traces", json={"file_id": unsplit["results_file_id"]}),
        404,
        "no file",
    )
    assert client.get(f"{API}/fitting/status/{job_id}").json()["status"] == "succeeded"


def test_job_routes_refuse_other_functions(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json={"function": "noop"}).json()
    _problem(client.get(f"{API}/fitting/status/{job['id']}"), 422, "not a fitting job")


def test_file_path_under_import_roots(
    client: TestClient, import_root: Path, tmp_path: Path
) -> None:
    s = synthetic_traces("exponential_decay", n=20, n_times=30, noise=0.002, seed=4)
    inside = import_root / "lab" / "traces.csv"
    inside.parent.mkdir(exist_ok=True)
    inside.write_bytes(to_wide_csv(s))
    loaded = client.post(f"{API}/load-traces", json={"file_path": str(inside)})
    assert loaded.status_code == 200, loaded.text
    file_id = loaded.json()["file_id"]
    assert loaded.json()["cell_count"] == 20
    assert _download(client, file_id) == inside.read_bytes()
    fit = client.post(
        f"{API}/fitting/start", json={"file_path": str(inside), "model_type": "exponential_decay"}
    )
    assert fit.status_code == 202, fit.text
    assert wait_for_job(client, fit.json()["job_id"], timeout=60)["status"] == "succeeded"
    outside = tmp_path / "traces.csv"
    outside.write_bytes(to_wide_csv(s))
    for url in (f"{API}/load-traces", f"{API}/fitting/start"):
        _problem(client.post(url, json={"file_path": str(outside)}), 403, "outside")
    _problem(client.post(f"{API}/load-traces", json={"file_path": "relative.csv"}), 422, "absolute")
    _problem(
        client.post(f"{API}/load-traces", json={"file_path": str(import_root / "missing.csv")}),
        404,
        "no file",
    )


def test_a_traces_file_with_wrong_columns_is_refused_at_start(client: TestClient) -> None:
    """What `load-traces` refuses at once is refused at fitting start too (422, no job),
    from the file's header or Parquet footer; a well-formed wide CSV is accepted."""
    table = pa.table({"time": [0.0, 1.0], "fov": [0, 0], "cell": [1, 1], "signal": [1.0, 2.0]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    cases = {
        "wrong.csv": (b"time,fov,cell,intensity\n0,0,1,5\n", "long format needs columns"),
        "one.csv": (b"# Time units: h\nsignal\n1\n", "got columns signal"),
        "header.csv": (b"time,fov,cell,value\n", "header but no data rows"),
        "wrong.parquet": (buf.getvalue(), "long format needs columns"),
    }
    before = client.get("/api/v1/jobs", params={"function": "fitting"}).json()["total"]
    for name, (data, words) in cases.items():
        file_id = _upload(client, name, data)
        _problem(client.post(f"{API}/load-traces", json={"file_id": file_id}), 422, words)
        _problem(client.post(f"{API}/fitting/start", json={"file_id": file_id}), 422, words)
        body = {"function": "fitting", "params": {"file_id": file_id}}
        _problem(client.post("/api/v1/jobs", json=body), 422, words)
    assert client.get("/api/v1/jobs", params={"function": "fitting"}).json()["total"] == before
    wide = _upload(client, "wide.csv", b"time,cell_1,cell_2\n0,1,2\n1,2,3\n2,3,4\n")
    assert client.post(f"{API}/fitting/start", json={"file_id": wide}).status_code == 202
