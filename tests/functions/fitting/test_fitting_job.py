"""The `fitting` capability as a real job (the real app, its worker processes, HTTP):
a wide CSV of two cells fits and reports `at_bound`; its results are served as soon as
it has succeeded, and its plots, made by a `fitting.plots` child afterwards, once they
exist."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from tests.functions.fitting.test_plots import _wide_two_cells
from tests.support.app import wait_for_job

API = "/api/v1/analysis"


def wait_for_plots(client: TestClient, job_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every results answer of a succeeded fit until its plots are no longer pending."""
    answers, deadline = [], time.monotonic() + 120
    while True:
        response = client.get(f"{API}/fitting/results/{job_id}", params={"limit": limit})
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if answers[-1]["plots_status"] != "pending":
            return answers
        assert time.monotonic() < deadline, "plots still pending after 120 s"
        time.sleep(0.05)


def test_a_wide_csv_of_two_cells_fits_and_plots(client: TestClient) -> None:
    """`time,cell_1,cell_2` (which load-traces accepts) made the job fail with
    "Too many bins for data range" from the parameter histogram."""
    upload = client.post("/api/v1/files", files={"file": ("two$cells.csv", _wide_two_cells())})
    assert upload.status_code == 201, upload.text
    started = client.post(f"{API}/fitting/start", json={"file_id": upload.json()["id"]})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    job = wait_for_job(client, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    answers = wait_for_plots(client, job_id)
    for pending in answers[:-1]:  # results before plots: everything but the plots
        assert pending["plot_file_ids"] == [] and pending["plots"] == {}
        assert [r["cell"] for r in pending["results"]] == ["cell_1", "cell_2"]
    results = answers[-1]
    summary = results["summary"]
    assert results["plots_status"] == "ready"
    assert summary["plot_errors"] == [] and sorted(results["plots"]) == [
        "examples",
        "parameters",
        "r_squared",
    ]
    for plot_id in results["plot_file_ids"]:
        png = client.get(f"/api/v1/files/{plot_id}/download")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    plots_job = client.get(f"/api/v1/jobs/{job['result']['plots_job_id']}").json()
    assert plots_job["function"] == "fitting.plots" and plots_job["parent_id"] == job_id
    # `succeeded` does not wait for the plots: the fit ended before its plots job did
    assert datetime.fromisoformat(job["finished_at"]) < datetime.fromisoformat(
        plots_job["finished_at"]
    )
    # at_bound in the summary, the per-cell JSON rows and the CSV; the bounds used
    assert summary["at_bound"] == {} and summary["bounds"]["t0"] == [-1.0, 10.0]
    assert [(r["cell"], r["at_bound"], r["quality"]) for r in results["results"]] == [
        ("cell_1", [], "good"),
        ("cell_2", [], "good"),
    ]
    body = client.get(f"/api/v1/files/{results['results_file_id']}/download").text
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["at_bound"] for r in rows] == ["", ""]
    messages = [e["message"] or "" for e in client.get(f"/api/v1/jobs/{job_id}/logs").json()]
    assert "2/2 traces fitted" in messages
    plot_logs = client.get(f"/api/v1/jobs/{plots_job['id']}/logs").json()
    assert not any("plot not made" in (e["message"] or "") for e in plot_logs)
