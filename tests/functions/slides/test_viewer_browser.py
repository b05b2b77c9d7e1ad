"""The viewer page in headless Chromium on a synthetic slide.

The platform's web routes are thin layers over `SlideTiles`; this test serves the same
calls through a minimal stand-in app (three routes + the static files) so the page, the
vendored OpenSeadragon and the tile service are exercised together in a real browser.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATIC = Path(__file__).resolve().parents[3] / "web" / "static"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
]


def make_app(slide: Path) -> FastAPI:
    from functions.slides.info import read_slide_info
    from functions.slides.service import SlideTiles

    tiles = SlideTiles()
    app = FastAPI()
    info = read_slide_info(slide).model_dump(mode="json")

    @app.get("/api/v1/viewer/{slide_id}.dzi")
    def read_dzi(slide_id: str, request: Request) -> Response:
        descriptor = tiles.descriptor(slide_id, slide)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(descriptor.to_json(f"/api/v1/viewer/{slide_id}_files/"))
        return Response(descriptor.to_xml(), media_type="application/xml")

    @app.get("/api/v1/viewer/{slide_id}_files/{level}/{col}_{row}.{fmt}")
    def read_tile(slide_id: str, level: int, col: int, row: int, fmt: str) -> Response:
        tile = tiles.tile(slide_id, slide, level, col, row, fmt)
        return Response(tile.content, media_type=tile.media_type,
                        headers={"ETag": tile.etag, "Cache-Control": tile.cache_control})

    @app.get("/api/v1/slides/{slide_id}")
    def read_slide(slide_id: str) -> dict[str, Any]:
        return {"id": slide_id, "name": slide.name, **info}

    @app.get("/api/v1/viewer/{slide_id}")
    def read_viewer(slide_id: str) -> FileResponse:
        return FileResponse(STATIC / "viewer.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@pytest.fixture
def server(tidy: Path) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(make_app(tidy), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


WAIT_LOADED = """() => {
  const a = window.aperture;
  const item = a && a.viewer.world.getItemAt(0);
  return !!item && item.getFullyLoaded();
}"""


def test_viewer_zooms_and_loads_tiles(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    tiles: list[tuple[str, int]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: tiles.append((r.url, r.status)) if "_files/" in r.url
                else None)
        page.goto(f"{server}/api/v1/viewer/tidy")
        page.wait_for_function(WAIT_LOADED, timeout=30_000)
        first = len(tiles)
        for _ in range(2):
            page.evaluate("() => { const v = window.aperture.viewer.viewport;"
                          " v.zoomBy(2.5); v.applyConstraints(); }")
            page.wait_for_timeout(300)
            page.wait_for_function(WAIT_LOADED, timeout=30_000)
        label = page.text_content("#scalebar-label") or ""
        page.screenshot(path=str(tmp_path / "viewer.png"))
        browser.close()
    assert errors == []
    assert first > 0 and len(tiles) > first, "zooming in must load deeper tiles"
    assert all(status == 200 for _, status in tiles), [t for t in tiles if t[1] != 200]
    assert label.endswith(("µm", "mm"))
    assert (tmp_path / "viewer.png").stat().st_size > 10_000
