"""Helpers for inference tests through the API: a slide uploaded (its metadata job makes
the slide record), a task started and awaited, features of a FeatureCollection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from tests.support.app import TERMINAL, wait_for_job

Client = httpx.Client | TestClient


def upload_slide(client: Client, path: Path, name: str | None = None) -> dict[str, Any]:
    """Upload `path`; wait for its metadata job; the slide record."""
    with path.open("rb") as fh:
        stored = client.post("/api/v1/files", files={"file": (name or path.name, fh)})
    assert stored.status_code == 201, stored.text
    file_id = stored.json()["id"]
    jobs = client.get("/api/v1/jobs", params={"function": "metadata", "limit": 500}).json()
    job = next(j for j in jobs["items"] if j["params"].get("file_id") == file_id)
    assert wait_for_job(client, job["id"], timeout=60)["status"] == "succeeded"
    slides = client.get("/api/v1/slides", params={"file_id": file_id}).json()
    return slides["items"][0]  # type: ignore[no-any-return]


def start_task(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/inference", json=body)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/api/v1/inference/tasks/{task['task_id']}"
    return task


def wait_task(
    client: Client, task_id: str, *, timeout: float = 120, statuses: set[str] = TERMINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/inference/tasks/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        if task["status"] in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']} after {timeout} s")
        time.sleep(0.1)


def centroids(features: list[dict[str, Any]]) -> np.ndarray:
    measured = [f["properties"]["measurements"] for f in features]
    return np.array([(m["centroid_x"], m["centroid_y"]) for m in measured]).reshape(-1, 2)


def bounds(features: list[dict[str, Any]]) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 of each feature's outline."""
    rings = [np.asarray(f["geometry"]["coordinates"][0]) for f in features]
    return np.array(
        [(r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()) for r in rings]
    ).reshape(-1, 4)
