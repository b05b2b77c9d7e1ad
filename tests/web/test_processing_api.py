"""Processing (PyAMA's API) through the real app and worker processes: load-metadata
(stored files, import-root paths, broken files), features, workflow start / status /
cancel / results, a failing FOV, merge, and ownership of every job-id route."""

from __future__ import annotations

import csv
import io
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from fastapi.testclient import TestClient

from functions.microscopy.synthetic import write_timelapse
from functions.microscopy.traces import BASE_COLUMNS
from tests.support.app import make_settings, register, signed_in, wait_for_job
from tests.support.fixtures import REAL
from web.app import create_app

API = "/api/v1/processing"
#: Small FOVs need a narrow border margin and small background tiles to keep cells.
FAST = {"border_margin": 8, "tile_size": 64}
CHANNELS = {
    "phase": {"channel": 0, "features": ["area"]},
    "fluorescence": [{"channel": 1, "features": ["intensity_total"]}],
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not REAL.is_dir():
        pytest.skip(f"real fixtures not found at {REAL}")
    base = tmp_path_factory.mktemp("imports")
    inside, outside = base / "inside", base / "outside"
    inside.mkdir()
    outside.mkdir()
    shutil.copy(REAL / "cluster.nd2", inside / "cluster.nd2")
    shutil.copy(REAL / "cluster.nd2", outside / "secret.nd2")
    (inside / "escape.nd2").symlink_to(outside / "secret.nd2")
    return {"inside": inside, "outside": outside}


@pytest.fixture(scope="module")
def app_client(
    tmp_path_factory: pytest.TempPathFactory, roots: dict[str, Path]
) -> Iterator[TestClient]:
    """The real app with an import root (overrides the shared fixture for this module)."""
    settings = make_settings(
        tmp_path_factory.mktemp("app") / "data", import_roots=[roots["inside"]]
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def other(app_client: TestClient) -> TestClient:
    return signed_in(app_client, register(app_client))


def _upload(client: TestClient, name: str, data: bytes) -> str:
    response = client.post("/api/v1/files", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _stored(client: TestClient, name: str, data: bytes) -> str:
    """A file recorded for the signed-in user without the upload route's checks, so the
    processing routes meet broken files themselves."""
    state: Any = client.app.state.aperture  # type: ignore[attr-defined]
    me = client.get("/api/v1/auth/me").json()
    return str(state.runtime.files.add(data, name=name, owner_id=uuid.UUID(me["id"])).id)


@pytest.fixture(scope="module")
def timelapse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_timelapse(
        tmp_path_factory.mktemp("syn"), fovs=2, frames=35, size=128, seed=5
    ).image


def _start(client: TestClient, file_id: str, **parameters: Any) -> Any:
    return client.post(
        f"{API}/workflow/start",
        json={"file_id": file_id, "channels": CHANNELS, "parameters": {**FAST, **parameters}},
    )


@pytest.fixture(scope="module")
def workflow(client: TestClient, timelapse: Path) -> dict[str, Any]:
    """One finished two-FOV workflow, shared by the status, results and merge tests."""
    file_id = _upload(client, "timelapse.ome.tif", timelapse.read_bytes())
    started = _start(client, file_id, fov_start=0, fov_end=1)
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"/api/v1/jobs/{started.json()['job_id']}"
    body = started.json()
    assert body["success"] is True and body["file_id"] == file_id
    early = client.get(f"{API}/workflow/status/{body['job_id']}").json()
    job = wait_for_job(client, body["job_id"], timeout=60)
    return {"job": job, "file_id": file_id, "early": early}


# load-metadata ----------------------------------------------------------------------


def test_cluster_nd2_metadata(client: TestClient) -> None:
    file_id = _upload(client, "cluster.nd2", (REAL / "cluster.nd2").read_bytes())
    response = client.post(f"{API}/load-metadata", json={"file_id": file_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["file_id"] == file_id and body["kind"] == "microscopy"
    m = body["metadata"]
    assert (m["base_name"], m["file_type"], m["dtype"]) == ("cluster", "nd2", "uint16")
    assert (m["n_frames"], m["n_z"], m["n_channels"], m["n_fovs"]) == (3, 10, 2, 1)
    assert (m["height"], m["width"]) == (31, 38)
    assert m["channel_names"] == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert m["pixel_size_um"] == pytest.approx(0.1678, abs=1e-4)
    assert m["z_step_um"] == pytest.approx(0.5)
    assert m["time_units"] == "min" and len(m["timepoints"]) == 3 and m["timepoints"][0] == 0
    assert [(c["emission_nm"], c["excitation_nm"]) for c in m["channels"]] == [
        (525.0, 488.0),
        (700.0, 561.0),
    ]
    assert m["file_path"] is None  # never the store's own path


def test_metadata_capability_runs_as_a_job(client: TestClient) -> None:
    file_id = _upload(client, "cluster.nd2", (REAL / "cluster.nd2").read_bytes())
    job = client.post(
        "/api/v1/jobs", json={"function": "metadata", "params": {"file_id": file_id}}
    ).json()
    done = wait_for_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["kind"] == "microscopy" and done["result"]["metadata"]["n_z"] == 10


def test_slide_metadata(client: TestClient) -> None:
    file_id = _upload(client, "small.svs", (REAL / "small.svs").read_bytes())
    body = client.post(f"{API}/load-metadata", json={"file_id": file_id}).json()
    assert body["kind"] == "slide" and body["metadata"]["vendor"] == "aperio"


def test_import_root_paths(client: TestClient, roots: dict[str, Path]) -> None:
    path = str(roots["inside"] / "cluster.nd2")
    response = client.post(f"{API}/load-metadata", json={"file_path": path})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["n_z"] == 10 and body["metadata"]["file_path"] == path
    stored = client.get(f"/api/v1/files/{body['file_id']}")
    assert stored.status_code == 200 and stored.json()["name"] == "cluster.nd2"
    assert stored.json()["size"] == (REAL / "cluster.nd2").stat().st_size
    for bad, status in [
        (roots["outside"] / "secret.nd2", 403),
        (roots["inside"] / "escape.nd2", 403),
        (roots["inside"] / "missing.nd2", 404),
        ("relative/cluster.nd2", 422),
    ]:
        refused = client.post(f"{API}/load-metadata", json={"file_path": str(bad)})
        assert refused.status_code == status, (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    both = client.post(
        f"{API}/load-metadata", json={"file_path": path, "file_id": str(uuid.uuid4())}
    )
    assert both.status_code == 422
    assert client.post(f"{API}/load-metadata", json={"file_path": path, "x": 1}).status_code == 422


def _broken_files(timelapse: Path) -> dict[str, bytes]:
    nd2 = (REAL / "cluster.nd2").read_bytes()
    tif = timelapse.read_bytes()
    return {
        "truncated.nd2": nd2[: len(nd2) // 3],
        "truncated.ome.tif": tif[: len(tif) // 2],
        "notes.nd2": b"time,value\n0,1\n",  # text named like an ND2
        "image.tif": b"\x89PNG\r\n\x1a\n" + bytes(200),  # a PNG header named like a TIFF
        "corrupt.tif": b"II*\x00" + bytes(range(256)) * 4,  # TIFF magic, then garbage
        "empty.czi": b"",
        "unreadable.svs": (REAL / "unreadable.svs").read_bytes(),
        "unopenable.tiff": (REAL / "unopenable.tiff").read_bytes(),
    }


def test_broken_files_are_4xx_not_500(client: TestClient, timelapse: Path) -> None:
    for name, data in _broken_files(timelapse).items():
        file_id = _stored(client, name, data)
        response = client.post(f"{API}/load-metadata", json={"file_id": file_id})
        assert response.status_code == 415, (name, response.status_code, response.text)
        assert name in response.json()["detail"], response.json()


def test_another_users_file_is_not_found(client: TestClient, other: TestClient) -> None:
    file_id = _upload(client, "cluster.nd2", (REAL / "cluster.nd2").read_bytes())
    assert other.post(f"{API}/load-metadata", json={"file_id": file_id}).status_code == 404
    assert _start(other, file_id).status_code == 404


def test_features_have_descriptions_and_units(client: TestClient) -> None:
    body = client.get(f"{API}/features").json()
    by_name = {f["name"]: f for f in body["features"]}
    assert by_name["area"]["unit"] == "px" and by_name["area"]["kind"] == "phase"
    assert by_name["intensity_total"]["kind"] == "fluorescence"
    assert all(f["description"] for f in body["features"])
    assert "area" in body["phase"] and "intensity_total" in body["fluorescence"]


# workflow ---------------------------------------------------------------------------


def test_workflow_status_reports_each_fov(client: TestClient, workflow: dict[str, Any]) -> None:
    job_id = workflow["job"]["id"]
    assert workflow["job"]["status"] == "succeeded", workflow["job"]
    early = workflow["early"]
    assert early["progress"]["total"] == 2 and [f["fov"] for f in early["fovs"]] == [0, 1]
    status = client.get(f"{API}/workflow/status/{job_id}").json()
    assert status["status"] == "succeeded" and status["job_id"] == job_id
    assert status["progress"] == {"current": 2, "total": 2, "percentage": 100.0}
    assert [(f["fov"], f["status"]) for f in status["fovs"]] == [(0, "succeeded"), (1, "succeeded")]
    assert all(f["job_id"] and f["error"] is None for f in status["fovs"])


def test_workflow_results_download_as_pyama_tables(
    client: TestClient, workflow: dict[str, Any]
) -> None:
    results = client.get(f"{API}/workflow/results/{workflow['job']['id']}").json()
    assert [t["fov"] for t in results["traces"]] == [0, 1]
    assert results["summary"]["succeeded"] == [0, 1] and results["summary"]["failed"] == []
    assert results["summary"]["cells_kept"] >= 1
    for trace in results["traces"]:
        text = client.get(f"/api/v1/files/{trace['csv_file_id']}/download").text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0])[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
        # only the features asked for: area on phase, intensity_total on channel 1
        assert set(rows[0]) - set(BASE_COLUMNS) == {
            "area_ch_0",
            "intensity_total_ch_1",
            "filter_reason",
        }
        assert {int(r["fov"]) for r in rows} == {trace["fov"]}
        data = client.get(f"/api/v1/files/{trace['parquet_file_id']}/download").content
        table = pq.read_table(io.BytesIO(data))
        assert table.column_names == list(rows[0]) and table.num_rows == len(rows)
        # the background's per-frame quality, for the user to judge before the traces
        background = trace["summary"]["background"]
        quality = background["channels"]["1"]
        assert background["method"] == "fit" and background["threshold"] == 0.01
        assert len(quality["residual_median"]) == len(quality["residual_spread"]) == 35
        flagged = [w for w in results["summary"]["warnings"] if "background residual" in w]
        assert bool(quality["flagged_frames"]) == any(f"FOV {trace['fov']}," in w for w in flagged)


def test_invalid_workflow_requests(client: TestClient, workflow: dict[str, Any]) -> None:
    file_id = workflow["file_id"]
    cases = [
        ({"fov_end": 2}, "does not exist"),
        ({"fov_start": 1, "fov_end": 0}, "invalid FOV range"),
        ({"min_iou": 5}, "min_iou"),
        ({"no_such_option": 1}, "no_such_option"),
        ({"phase_channel": 1}, "set through `channels`"),
    ]
    for parameters, message in cases:
        response = _start(client, file_id, **parameters)
        assert response.status_code == 422 and message in response.json()["detail"], (
            parameters,
            response.text,
        )
    bad_channels = [
        {"phase": {"channel": 2}},
        {"phase": {"channel": 0, "features": ["volume"]}},
        {"phase": {"channel": 0}, "fluorescence": [{"channel": 0}]},
    ]
    for channels in bad_channels:
        response = client.post(
            f"{API}/workflow/start", json={"file_id": file_id, "channels": channels}
        )
        assert response.status_code == 422, (channels, response.text)
    slide = _upload(client, "small.svs", (REAL / "small.svs").read_bytes())
    assert _start(client, slide).status_code == 415


def _with_corrupt_fov(source: Path, out: Path, broken: tuple[int, ...] = (1,)) -> Path:
    """The time-lapse rewritten zlib-compressed, with the `broken` FOVs' compressed data destroyed
    (their metadata stay intact, so only their own jobs can notice)."""
    with tifffile.TiffFile(source) as tif:
        fovs = [series.asarray() for series in tif.series]
    with tifffile.TiffWriter(out, ome=True) as writer:
        for data in fovs:
            writer.write(
                data,
                compression="zlib",
                metadata={
                    "axes": "TCYX",
                    "TimeIncrement": 10.0,
                    "TimeIncrementUnit": "min",
                    "Channel": {"Name": ["Phase", "GFP"]},
                },
            )
    with tifffile.TiffFile(out) as tif:
        pages: list[Any] = [page for fov in broken for page in tif.series[fov].pages]
        segments = [
            (o, n)
            for page in pages
            for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
        ]
    with open(out, "r+b") as fh:
        for offset, count in segments:
            fh.seek(offset)
            fh.write(np.full(count, 0xFF, dtype=np.uint8).tobytes())
    return out


def test_a_failing_fov_does_not_fail_the_others(
    client: TestClient, timelapse: Path, tmp_path: Path
) -> None:
    broken = _with_corrupt_fov(timelapse, tmp_path / "broken.ome.tif")
    file_id = _upload(client, "broken.ome.tif", broken.read_bytes())
    job_id = _start(client, file_id).json()["job_id"]
    assert wait_for_job(client, job_id, timeout=60)["status"] == "succeeded"
    status = client.get(f"{API}/workflow/status/{job_id}").json()
    states = {f["fov"]: f for f in status["fovs"]}
    assert states[0]["status"] == "succeeded" and states[1]["status"] == "failed"
    assert "unreadable" in states[1]["error"]
    assert status["failed_fovs"] == [1] and "1 of 2 FOVs failed" in status["warnings"][0]
    results = client.get(f"{API}/workflow/results/{job_id}").json()
    assert [t["fov"] for t in results["traces"]] == [0]
    assert [f["fov"] for f in results["summary"]["failed"]] == [1]
    assert results["summary"]["failed_fovs"] == [1] and results["summary"]["warnings"]
    logs = client.get(f"/api/v1/jobs/{job_id}/logs").json()
    assert any("warning: 1 of 2 FOVs failed" in (e["message"] or "") for e in logs)
    merge = client.post(
        f"{API}/merge", json={"job_id": job_id, "samples": [{"name": "a", "fovs": "0-1"}]}
    )
    assert merge.status_code == 422 and "[1]" in merge.json()["detail"]


def test_cancel_a_workflow_started_from_a_server_path(
    client: TestClient, timelapse: Path, roots: dict[str, Path]
) -> None:
    path = roots["inside"] / "timelapse.ome.tif"
    shutil.copy(timelapse, path)
    started = client.post(
        f"{API}/workflow/start",
        json={"file_path": str(path), "channels": CHANNELS, "parameters": FAST},
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    imported = client.get(f"/api/v1/files/{started.json()['file_id']}").json()
    assert imported["name"] == "timelapse.ome.tif" and imported["size"] == path.stat().st_size
    cancelled = client.post(f"{API}/workflow/cancel/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] in {"cancelling", "cancelled"}
    assert wait_for_job(client, job_id, timeout=30)["status"] == "cancelled"
    for fov in client.get(f"{API}/workflow/status/{job_id}").json()["fovs"]:
        if fov["job_id"] is not None:  # a running FOV stops at its next batch (or is killed)
            wait_for_job(client, fov["job_id"], timeout=30)
    children = client.get(f"{API}/workflow/status/{job_id}").json()["fovs"]
    assert all(f["status"] in {"pending", "cancelled", "succeeded"} for f in children), children
    results = client.get(f"{API}/workflow/results/{job_id}")
    assert results.status_code == 409
    again = client.post(f"{API}/workflow/cancel/{job_id}")
    assert again.status_code == 409


# merge ------------------------------------------------------------------------------


def test_merge_writes_long_csvs_per_sample(client: TestClient, workflow: dict[str, Any]) -> None:
    response = client.post(
        f"{API}/merge",
        json={
            "job_id": workflow["job"]["id"],
            "features": ["area", "intensity_total"],
            "samples": [{"name": "ctrl", "fovs": "0"}, {"name": "treated", "fovs": [1]}],
        },
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{started['job_id']}"
    assert started["workflow_job_id"] == workflow["job"]["id"] and "file_id" not in started
    done = wait_for_job(client, started["job_id"])
    assert done["status"] == "succeeded", done
    listed = client.get(f"{API}/merge/results/{started['job_id']}")
    assert listed.status_code == 200, listed.text
    by_key = {(f["sample"], f["feature"], f["channel"]): f for f in listed.json()["files"]}
    assert set(by_key) == {
        (s, f, c) for s in ("ctrl", "treated") for f, c in (("area", 0), ("intensity_total", 1))
    }
    assert by_key[("ctrl", "area", 0)]["name"] == "ctrl_area_ch_0.csv"
    files = done["result"]["files"]
    assert files["ctrl_area_ch_0.csv"] == by_key[("ctrl", "area", 0)]["file_id"]
    assert set(files) == {
        f"{s}_{f}.csv" for s in ("ctrl", "treated") for f in ("area_ch_0", "intensity_total_ch_1")
    }
    text = client.get(f"/api/v1/files/{files['ctrl_area_ch_0.csv']}/download").text
    lines = text.splitlines()
    assert lines[0] == "# Time units: min" and lines[1] == "time,fov,cell,value"
    assert {row.split(",")[1] for row in lines[2:]} == {"0"} and len(lines) > 2


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([{"name": "a", "fovs": "0-"}], "is not N or N-M"),
        ([{"name": "a", "fovs": "1-0"}], "reversed"),
        ([{"name": "a", "fovs": "0, 5"}], "[5]"),
        ([{"name": "a", "fovs": [-1]}], "non-negative"),
        ([{"name": "a", "fovs": "0"}, {"name": "a", "fovs": "1"}], "differ"),
        ([{"name": "../a", "fovs": "0"}], "name"),
        ([], "samples"),
    ],
)
def test_invalid_merge_requests(
    client: TestClient, workflow: dict[str, Any], samples: list[dict[str, Any]], message: str
) -> None:
    response = client.post(
        f"{API}/merge", json={"job_id": workflow["job"]["id"], "samples": samples}
    )
    assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_merge_needs_a_workflow_and_known_features(
    client: TestClient, workflow: dict[str, Any]
) -> None:
    samples = [{"name": "a", "fovs": "0"}]
    noop = client.post("/api/v1/jobs", json={"function": "noop"}).json()
    response = client.post(f"{API}/merge", json={"job_id": noop["id"], "samples": samples})
    assert response.status_code == 422 and "not a workflow" in response.json()["detail"]
    unknown = client.post(
        f"{API}/merge",
        json={"job_id": workflow["job"]["id"], "samples": samples, "features": ["volume"]},
    )
    assert unknown.status_code == 422
    missing = client.post(f"{API}/merge", json={"job_id": str(uuid.uuid4()), "samples": samples})
    assert missing.status_code == 404
    workflow_id = workflow["job"]["id"]
    not_a_merge = client.get(f"{API}/merge/results/{workflow_id}")
    assert not_a_merge.status_code == 422 and "not a merge" in not_a_merge.json()["detail"]
    assert client.get(f"{API}/merge/results/{uuid.uuid4()}").status_code == 404


def test_other_users_get_404_on_job_routes(other: TestClient, workflow: dict[str, Any]) -> None:
    job_id = workflow["job"]["id"]
    assert other.get(f"{API}/workflow/status/{job_id}").status_code == 404
    assert other.get(f"{API}/workflow/results/{job_id}").status_code == 404
    assert other.post(f"{API}/workflow/cancel/{job_id}").status_code == 404
    merge = other.post(
        f"{API}/merge", json={"job_id": job_id, "samples": [{"name": "a", "fovs": "0"}]}
    )
    assert merge.status_code == 404


# checked at submit --------------------------------------------------------------------


def _job_count(client: TestClient) -> int:
    return int(client.get("/api/v1/jobs", params={"limit": 1}).json()["total"])


def test_what_the_file_lacks_is_refused_before_a_job_exists(client: TestClient) -> None:
    """cluster.nd2 has 1 FOV, 2 channels and 10 z planes: a z, channel or FOV it lacks is
    422 at start and through POST /jobs (with or without an explicit FOV list), and no
    job is created."""
    file_id = _upload(client, "cluster.nd2", (REAL / "cluster.nd2").read_bytes())
    before = _job_count(client)
    started = _start(client, file_id, z=12)
    assert started.status_code == 422 and "z plane 12 does not exist" in started.text
    assert "the file has 10" in started.json()["detail"]
    late = _start(client, file_id, fov_start=1)
    assert late.status_code == 422 and "FOV 1 does not exist" in late.json()["detail"]
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("workflow", {"fovs": [0], "options": {"fluorescence_channels": [2]}}, "channel 2"),
        ("workflow", {"fovs": "0", "options": {"z": 10}}, "z plane 10"),
        ("workflow", {"fovs": [3]}, "FOV 3 does not exist"),
        ("workflow.fov", {"fov": 0, "options": {"z": 11}}, "z plane 11"),
    ]
    for function, params, words in bad:
        body = {"function": function, "params": {"file_id": file_id, **params}}
        refused = client.post("/api/v1/jobs", json=body)
        assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
    slide = _upload(client, "small.svs", (REAL / "small.svs").read_bytes())
    as_workflow = {"function": "workflow", "params": {"file_id": slide}}
    assert client.post("/api/v1/jobs", json=as_workflow).status_code == 415
    assert _job_count(client) == before + 1  # the slide's own metadata job, nothing else


def test_a_workflow_whose_every_fov_failed_fails(
    client: TestClient, timelapse: Path, tmp_path: Path
) -> None:
    broken = _with_corrupt_fov(timelapse, tmp_path / "dead.ome.tif", broken=(0, 1))
    file_id = _upload(client, "dead.ome.tif", broken.read_bytes())
    job = wait_for_job(client, _start(client, file_id).json()["job_id"], timeout=60)
    assert job["status"] == "failed", job
    assert "every FOV failed (2)" in job["error"]["message"]
    status = client.get(f"{API}/workflow/status/{job['id']}").json()
    assert status["status"] == "failed" and status["failed_fovs"] == [0, 1]
