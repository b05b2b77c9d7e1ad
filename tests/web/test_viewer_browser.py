"""The viewer page in headless Chromium, served by the real app (`aperture serve`).

A synthetic slide is uploaded over HTTP (its metadata job makes the slide record); the
browser signs in through the page's own origin, so the session cookie is what
authorises the Deep Zoom requests, as for a user. It opens the viewer, zooms in twice,
and every tile request must succeed with no console error.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.app import PASSWORD, LiveServer, register, wait_for_job

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
]

WAIT_LOADED = """() => {
  const a = window.aperture;
  const item = a && a.viewer.world.getItemAt(0);
  return !!item && item.getFullyLoaded();
}"""
LOGIN = """async ([email, password]) => {
  const response = await fetch('/api/v1/auth/login', {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({email, password}),
  });
  return response.status;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("viewer") / "data").start()
    try:
        yield live
    finally:
        live.stop()


def upload_slide(client: httpx.Client, path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        stored = client.post("/api/v1/files", files={"file": (path.name, fh)})
    assert stored.status_code == 201, stored.text
    jobs = client.get("/api/v1/jobs", params={"function": "metadata"}).json()["items"]
    job = next(j for j in jobs if j["params"]["file_id"] == stored.json()["id"])
    assert wait_for_job(client, job["id"], timeout=60)["status"] == "succeeded"
    slides = client.get("/api/v1/slides", params={"file_id": stored.json()["id"]}).json()
    return slides["items"][0]  # type: ignore[no-any-return]


def test_viewer_zooms_and_loads_tiles(server: LiveServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from functions.slides.synthetic import write_synthetic_slide

    path = write_synthetic_slide(tmp_path / "tidy.svs", width=2048, height=1536, levels=3, seed=5)
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.org"
    with server.client() as client:
        client.headers.update(register(client, email))
        slide = upload_slide(client, path)

    errors: list[str] = []
    tiles: list[tuple[str, int]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.goto(f"{server.url}/api/v1/health")
        assert page.evaluate(LOGIN, [email, PASSWORD]) == 200
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response", lambda r: tiles.append((r.url, r.status)) if "_files/" in r.url else None
        )
        page.goto(f"{server.url}/api/v1/viewer")
        page.wait_for_selector("#slides a")
        assert page.text_content("#slides a") == "tidy.svs"
        page.click("#slides a")
        page.wait_for_function(WAIT_LOADED, timeout=30_000)
        assert page.url == f"{server.url}/api/v1/viewer/{slide['id']}"
        first = len(tiles)
        for _ in range(2):
            page.evaluate(
                "() => { const v = window.aperture.viewer.viewport;"
                " v.zoomBy(2.5); v.applyConstraints(); }"
            )
            page.wait_for_timeout(300)
            page.wait_for_function(WAIT_LOADED, timeout=30_000)
        label = page.text_content("#scalebar-label") or ""
        title = page.text_content("#title")
        page.screenshot(path=str(tmp_path / "viewer.png"))
        browser.close()
    assert errors == []
    assert first > 0 and len(tiles) > first, "zooming in must load deeper tiles"
    assert all(status == 200 for _, status in tiles), [t for t in tiles if t[1] != 200]
    assert title == "tidy.svs" and label.endswith(("µm", "mm"))
    assert (tmp_path / "viewer.png").stat().st_size > 10_000


PREDICTIONS_STATE = "() => window.aperturePredictions && window.aperturePredictions.state"
#: Canvas pixels of the builtin model's class colour (PALETTE[0], #2f6fd6), as drawn.
COUNT_COLOURED = """() => {
  const canvas = document.getElementById('predictions-layer');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 128 && Math.abs(data[i] - 47) < 40 && Math.abs(data[i + 1] - 111) < 40
        && Math.abs(data[i + 2] - 214) < 40) n += 1;
  }
  return n;
}"""


def test_predictions_overlay_follows_the_viewport(server: LiveServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from functions.inference.synthetic import write_he_slide
    from tests.support.inference import start_task, wait_task

    path, _ = write_he_slide(tmp_path / "he.svs", width=1024, height=768, seed=3)
    email = f"predictions-{uuid.uuid4().hex[:8]}@example.org"
    with server.client() as client:
        client.headers.update(register(client, email))
        slide = upload_slide(client, path)
        started = start_task(client, {"slide_id": slide["id"], "model": "nuclei-he"})
        task = wait_task(client, started["task_id"], timeout=120)
        assert task["status"] == "succeeded", task["error"]

    errors: list[str] = []
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"{server.url}/api/v1/health")
        assert page.evaluate(LOGIN, [email, PASSWORD]) == 200
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: asked.append(r.url) if "/predictions/" in r.url else None)
        page.goto(f"{server.url}/api/v1/viewer/{slide['id']}")
        page.wait_for_function(WAIT_LOADED, timeout=30_000)
        page.wait_for_function(f"() => ({PREDICTIONS_STATE})().task !== null", timeout=15_000)
        assert asked == []  # nothing is fetched before the box is ticked
        page.check("#show-overlay")
        page.wait_for_function(
            f"() => {{ const s = ({PREDICTIONS_STATE})(); return s.mode === 'outlines' "
            "&& s.drawn > 0; }",
            timeout=15_000,
        )
        whole = page.evaluate(PREDICTIONS_STATE)
        assert whole["drawn"] == whole["inView"] == task["objects"]
        assert page.evaluate(COUNT_COLOURED) > 2000  # outlines in the class colour
        assert "bbox=" in asked[-1] and f"task_id={task['task_id']}" in asked[-1]
        legend = page.text_content("#predictions-classes") or ""
        assert str(task["objects"]) in legend.replace(",", "")
        before = len(asked)
        page.evaluate(
            "() => { const v = window.aperture.viewer.viewport;"
            " v.zoomBy(3, new OpenSeadragon.Point(0.25, 0.2)); v.applyConstraints(); }"
        )
        page.wait_for_function(
            f"() => ({PREDICTIONS_STATE})().requests > {whole['requests']}", timeout=15_000
        )
        page.wait_for_timeout(600)
        zoomed = page.evaluate(PREDICTIONS_STATE)
        assert 0 < zoomed["inView"] < whole["inView"] and len(asked) > before
        page.screenshot(path=str(tmp_path / "predictions.png"))
        page.eval_on_selector(
            "#predictions-confidence",
            "e => { e.value = '0.9'; e.dispatchEvent(new Event('input')); }",
        )
        page.wait_for_function(
            f"() => ({PREDICTIONS_STATE})().requests > {zoomed['requests']}", timeout=15_000
        )
        page.wait_for_timeout(600)
        assert "min_confidence=0.9" in asked[-1]
        assert page.evaluate(PREDICTIONS_STATE)["inView"] <= zoomed["inView"]
        page.eval_on_selector(
            "#predictions-confidence",
            "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }",
        )
        page.evaluate("() => window.aperturePredictions.setOutlineLimit(5)")
        page.wait_for_function(
            f"() => {{ const s = ({PREDICTIONS_STATE})(); return s.mode === 'density' "
            "&& s.drawn > 0; }",
            timeout=15_000,
        )
        assert any("/density?" in url for url in asked)
        page.screenshot(path=str(tmp_path / "predictions-density.png"))
        browser.close()
    assert errors == []
    assert (tmp_path / "predictions.png").stat().st_size > 10_000
