"""The viewer page in headless Chromium, served by the real app (`aperture serve`).

A synthetic slide is uploaded over HTTP (its metadata job makes the slide record); the
browser signs in through the page's own origin, so the session cookie is what
authorises the Deep Zoom requests, as for a user. It opens the viewer, zooms in twice,
and every tile request must succeed with no console error. Access tokens live
`TTL_S` seconds here: a second test signs in on the viewer's own page, reads a slide
for longer than two lifetimes, and no tile fails (the page renews its session), then
signs out.
"""

from __future__ import annotations

import shutil
import time
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


#: Access-token lifetime of this module's server: short, so a test outlives a few.
TTL_S = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"APERTURE_ACCESS_TOKEN_TTL_S": str(TTL_S)}
    live = LiveServer(tmp_path_factory.mktemp("viewer") / "data", env=env).start()
    try:
        yield live
    finally:
        live.stop()


def sign_up(client: httpx.Client, email: str) -> None:
    """Register `email` and sign `client` in with an API key: access tokens here outlive
    only a few requests."""
    client.headers.update(register(client, email))
    key = client.post("/api/v1/auth/api-keys", json={"name": "test"})
    assert key.status_code == 201, key.text
    client.headers.pop("Authorization")
    client.headers["X-API-Key"] = key.json()["key"]


def upload_slide(client: httpx.Client, path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        stored = client.post("/api/v1/files", files={"file": (path.name, fh)})
    assert stored.status_code == 201, stored.text
    job_id = stored.json()["metadata_job_id"]
    assert wait_for_job(client, job_id, timeout=60)["status"] == "succeeded"
    slides = client.get("/api/v1/slides", params={"file_id": stored.json()["id"]}).json()
    return slides["items"][0]  # type: ignore[no-any-return]


def test_viewer_zooms_and_loads_tiles(server: LiveServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from functions.slides.synthetic import write_synthetic_slide

    path = write_synthetic_slide(tmp_path / "tidy.svs", width=2048, height=1536, levels=3, seed=5)
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.org"
    with server.client() as client:
        sign_up(client, email)
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


PAN = """([dx, dy]) => {
  const v = window.aperture.viewer.viewport;
  v.panBy(new OpenSeadragon.Point(dx, dy)); v.applyConstraints();
}"""
ONE_TO_ONE = """() => {
  const v = window.aperture.viewer.viewport;
  v.zoomTo(v.imageToViewportZoom(1.0), null, true); v.applyConstraints(true);
  v.panTo(new OpenSeadragon.Point(0.1, 0.1), true);
}"""


def test_a_long_read_signs_in_on_the_viewer_and_never_loses_a_tile(
    server: LiveServer, tmp_path: Path
) -> None:
    """Opened cold, the slide sends the browser to the viewer's sign-in page and back;
    panning for over two token lifetimes keeps loading tiles with no failure (the page
    renews its session before expiry); signing out returns to the sign-in page."""
    from playwright.sync_api import sync_playwright

    from functions.slides.synthetic import write_synthetic_slide

    path = write_synthetic_slide(tmp_path / "long.svs", width=4096, height=3072, levels=3, seed=7)
    email = f"reader-{uuid.uuid4().hex[:8]}@example.org"
    with server.client() as client:
        sign_up(client, email)
        slide = upload_slide(client, path)
    slide_url = f"{server.url}/api/v1/viewer/{slide['id']}"

    errors: list[tuple[str, str]] = []  # (phase, message)
    phase = ["signing in"]  # a wrong password is a 401 in the console, on purpose
    tiles: list[tuple[float, int]] = []
    refreshes: list[int] = []

    def seen(response: Any) -> None:
        if "_files/" in response.url:
            tiles.append((time.monotonic(), response.status))
        elif response.url.endswith("/auth/refresh"):
            refreshes.append(response.status)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.on(
            "console", lambda m: errors.append((phase[0], m.text)) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: errors.append((phase[0], str(e))))
        page.on("response", seen)
        page.goto(slide_url)
        page.wait_for_url("**/api/v1/viewer/login?next=*")
        page.fill("#email", email)
        page.fill("#password", "not the password")
        page.click("#submit")
        page.wait_for_selector("#error:not(:empty)")
        assert "password" in (page.text_content("#error") or "")
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_url(slide_url)
        signed_in = time.monotonic()
        phase[0] = "reading"
        page.wait_for_function(WAIT_LOADED, timeout=30_000)
        assert page.text_content("#who") == email
        page.evaluate(ONE_TO_ONE)
        step = 0
        while time.monotonic() - signed_in < 2.3 * TTL_S:  # a serpentine over new tiles
            row, col = divmod(step, 12)
            page.evaluate(PAN, [0.04 if row % 2 == 0 else -0.04, 0.0 if col < 11 else 0.12])
            page.wait_for_timeout(400)
            step += 1
        page.wait_for_function(WAIT_LOADED, timeout=30_000)
        page.screenshot(path=str(tmp_path / "long-read.png"))
        phase[0] = "signed out"
        page.click("#sign-out")
        page.wait_for_url("**/api/v1/viewer/login?next=*")
        after = page.evaluate(
            "async (url) => (await fetch(url, {credentials: 'same-origin'})).status",
            f"{server.url}/api/v1/viewer/{slide['id']}.dzi",
        )
        browser.close()
    assert [e for e in errors if e[0] == "reading"] == []
    assert [e for e in errors if e[0] == "signing in"] == [
        (
            "signing in",
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)",
        )
    ], errors  # only the wrong password: opened cold, the page asks nothing before sign-in
    assert tiles and all(status == 200 for _, status in tiles), [s for _, s in tiles if s != 200]
    late = [t for t, _ in tiles if t - signed_in > 2 * TTL_S]
    assert late, "tiles must still be requested after two token lifetimes"
    assert len(refreshes) >= 2 and set(refreshes) == {200}, refreshes
    assert after == 401  # signed out: the cookies are gone
    assert (tmp_path / "long-read.png").stat().st_size > 10_000


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
        sign_up(client, email)
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
        # zoomed out (a small window over the whole slide): nuclei become points
        page.set_viewport_size({"width": 1000, "height": 200})
        page.wait_for_function("() => window.aperture.viewer.container.clientHeight < 200")
        page.wait_for_timeout(300)  # OpenSeadragon notices the new size on its next frame
        page.evaluate("() => window.aperture.viewer.viewport.goHome(true)")
        page.evaluate("() => window.aperturePredictions.setOutlineLimit(100000)")
        page.wait_for_function(
            f"() => {{ const s = ({PREDICTIONS_STATE})(); return s.mode === 'points' "
            f"&& s.drawn === {task['objects']}; }}",  # every nucleus, once the box's answer is in
            timeout=15_000,
        )
        assert page.evaluate(COUNT_COLOURED) > task["objects"]  # dots in the class colour
        page.screenshot(path=str(tmp_path / "predictions-points.png"))
        browser.close()
    assert errors == []
    assert (tmp_path / "predictions.png").stat().st_size > 10_000
