"""Tile rendering and pyramid benchmarks on a synthetic 50,000 x 40,000 slide.

    uv run python tests/bench/bench_tiles.py [--tiles 1000] [--skip-pyramid]
    uv run python tests/bench/bench_tiles.py --http http://127.0.0.1:8000/api/v1 --slide-id ID

Prints one JSON line per measurement, each with its reference measured in the same run:

- renderer: the same random Deep Zoom tile addresses (254/1, JPEG q75) rendered cold by
  Aperture's renderer and by `openslide.deepzoom.DeepZoomGenerator.get_tile` + Pillow
  JPEG q75; goal >= 3x. "Cold" means the rendered-tile cache is off and every slide is
  opened fresh; both sides keep their library's decoded-tile cache (OpenSlide's own,
  Aperture's of the same order of size). Two samplings: every level equally likely
  ("levels", the goal's measure), and every tile equally likely ("tiles", dominated by
  the full-resolution level, where both sides mostly decode the same JPEG tiles).
- pyramid: `tiles.pyramid`'s build (dzsave + our .dzi) against bare `pyvips dzsave`
  with the same options; goal <= 1.15. Also the banded build run serially, for scale.
- http (with --http): 8 concurrent clients fetching the same addresses through the web
  layer, cold then warm: tiles/s and per-request p50/p99. Needs a running server and a
  slide record (`--slide-id`, `--token`); or `--serve` starts `aperture serve` on a fresh
  data directory, uploads the slide (its metadata job makes the record) and uses that.

    uv run python tests/bench/bench_tiles.py --serve --size 16384x12288 --tiles 1000

- pyramid jobs (with --jobs): `tiles.pyramid` submitted to `aperture serve` (2 local
  workers) as one job and fanned out into bands, wall time from submit to the finish
  event on the jobs WebSocket (everything the job does: reading the slide, dzsave, and
  storing every tile durably in the directory store), against bare `pyvips dzsave` of
  the same file, same tile options, in this process (no upload, no sync). The single
  job and the reference alternate `--repeats` times and the best of each is compared.
  The finish is awaited on the WebSocket rather than by polling the API, as polling
  every 50 ms costs the server about a tenth of a core that dzsave would otherwise have.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

Address = tuple[int, int, int]
SIZE = (50_000, 40_000)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def make_slide(path: Path, width: int, height: int, seed: int = 7) -> Path:
    from functions.slides.synthetic import write_synthetic_slide

    start = time.perf_counter()
    write_synthetic_slide(path, width=width, height=height, seed=seed)
    emit(
        bench="synthetic.slide",
        width=width,
        height=height,
        levels=4,
        seconds=round(time.perf_counter() - start, 2),
        bytes=path.stat().st_size,
    )
    return path


def sample_addresses(path: Path, n: int, *, sampling: str, seed: int = 0) -> list[Address]:
    """`n` random (level, col, row) addresses at 254/1: 'levels' picks a level uniformly
    then a tile in it, 'tiles' picks uniformly among all tiles."""
    from functions.slides.handles import SlideHandle

    geometry = SlideHandle(path).geometry(254, 1, False)
    rng = random.Random(seed)
    out: list[Address] = []
    counts = [c * r for c, r in geometry.level_tiles]
    for _ in range(n):
        if sampling == "levels":
            level = rng.randrange(geometry.level_count)
        else:
            level = rng.choices(range(geometry.level_count), weights=counts)[0]
        cols, rows = geometry.level_tiles[level]
        out.append((level, rng.randrange(cols), rng.randrange(rows)))
    return out


def render_aperture(path: Path, addresses: list[Address]) -> float:
    """Tiles per second through `SlideTiles` with the rendered-tile cache off."""
    from functions.slides.service import SlideTiles, TileSettings

    tiles = SlideTiles(TileSettings(cache_bytes=0, decoded_cache_bytes=32 << 20))
    tiles.descriptor("bench", path)  # open the slide outside the timing, as the reference
    start = time.perf_counter()
    for level, col, row in addresses:
        tiles.tile("bench", path, level, col, row, "jpeg")
    return len(addresses) / (time.perf_counter() - start)


def render_reference(path: Path, addresses: list[Address]) -> float:
    """Tiles per second through DeepZoomGenerator.get_tile + Pillow JPEG q75."""
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    dz = DeepZoomGenerator(openslide.OpenSlide(path), 254, 1)
    start = time.perf_counter()
    for level, col, row in addresses:
        buffer = io.BytesIO()
        dz.get_tile(level, (col, row)).save(buffer, "JPEG", quality=75)
    return len(addresses) / (time.perf_counter() - start)


def bench_renderer(path: Path, n: int) -> None:
    for sampling in ("levels", "tiles"):
        addresses = sample_addresses(path, n, sampling=sampling)
        reference = render_reference(path, addresses)
        ours = render_aperture(path, addresses)
        emit(
            bench="tiles.render",
            sampling=sampling,
            tiles=n,
            slide=f"{SIZE[0]}x{SIZE[1]}",
            settings="254/1 jpeg q75 cold",
            aperture_tiles_per_s=round(ours, 1),
            reference="openslide.deepzoom.DeepZoomGenerator.get_tile + PIL JPEG q75",
            reference_tiles_per_s=round(reference, 1),
            ratio=round(ours / reference, 2),
            goal=">= 3",
        )


def pyramid_seconds(path: Path, work: Path, *, bare: bool, bands: int = 0) -> float:
    """Seconds for one pyramid build into a scratch directory (removed afterwards)."""
    import pyvips

    from functions.slides.pyramid import (
        PyramidOptions,
        build_band,
        build_lower_levels,
        build_pyramid,
        open_level0,
        plan_bands,
    )

    out = work / ("bare" if bare else f"ours{bands}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    options = PyramidOptions()
    # as the capability runs it: progress reported, cancellation polled
    hooks: dict[str, Any] = {"progress": lambda f, m: None, "cancelled": lambda: False}
    start = time.perf_counter()
    if bare:
        image = pyvips.Image.new_from_file(str(path))
        image.dzsave(str(out / "slide"), tile_size=254, overlap=1, suffix=".jpeg[Q=75,keep=none]")
    else:
        image = open_level0(path, work)
        if bands:
            for band in plan_bands(image, options, bands):
                build_band(image, out, options, band, **hooks)
            build_lower_levels(image, out, options, **hooks)
        else:
            build_pyramid(image, out, options, **hooks)
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def bench_pyramid(path: Path, work: Path, repeats: int, banded: bool) -> None:
    """Alternate bare and ours `repeats` times and compare the best of each: on a shared
    machine the minimum is the least disturbed run."""
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(pyramid_seconds(path, work, bare=True))
        ours.append(pyramid_seconds(path, work, bare=False))
    emit(
        bench="tiles.pyramid",
        part="build (no upload)",
        slide=f"{SIZE[0]}x{SIZE[1]}",
        settings="254/1 jpeg q75",
        repeats=repeats,
        aperture_s=round(min(ours), 2),
        reference="bare pyvips dzsave",
        reference_s=round(min(bare), 2),
        ratio=round(min(ours) / min(bare), 3),
        goal="<= 1.15",
        all_aperture_s=[round(s, 2) for s in ours],
        all_reference_s=[round(s, 2) for s in bare],
    )
    if banded:
        seconds = pyramid_seconds(path, work, bare=False, bands=32)
        emit(
            bench="tiles.pyramid",
            part="banded build run serially (32 rows per band)",
            slide=f"{SIZE[0]}x{SIZE[1]}",
            aperture_s=round(seconds, 2),
            reference="bare pyvips dzsave",
            reference_s=round(min(bare), 2),
            ratio=round(seconds / min(bare), 3),
            goal="none: in production the bands run as parallel jobs",
        )


async def fetch_all(
    base_url: str, slide_id: str, addresses: list[Address], clients: int, headers: dict[str, str]
) -> tuple[float, list[float]]:
    """Tiles per second fetching every address through HTTP with `clients` workers, and
    each request's latency in seconds."""
    import httpx

    queue: asyncio.Queue[Address] = asyncio.Queue()
    for address in addresses:
        queue.put_nowait(address)
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            level, col, row = queue.get_nowait()
            url = f"{base_url}/viewer/{slide_id}_files/{level}/{col}_{row}.jpeg"
            sent = time.perf_counter()
            response = await client.get(url)
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return len(addresses) / (time.perf_counter() - start), latencies


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def bench_http(base_url: str, slide_id: str, path: Path, n: int, token: str | None) -> None:
    addresses = sample_addresses(path, n, sampling="levels")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cold = asyncio.run(fetch_all(base_url, slide_id, addresses, 8, headers))
    warm = asyncio.run(fetch_all(base_url, slide_id, addresses, 8, headers))
    reference = render_reference(path, addresses)
    for phase, (rate, latencies) in (("cold", cold), ("warm", warm)):
        emit(
            bench="tiles.http",
            phase=phase,
            clients=8,
            tiles=n,
            aperture_tiles_per_s=round(rate, 1),
            p50_ms=percentile_ms(latencies, 0.5),
            p99_ms=percentile_ms(latencies, 0.99),
            reference="DeepZoomGenerator.get_tile + PIL JPEG q75, in-process, one thread",
            reference_tiles_per_s=round(reference, 1),
            ratio=round(rate / reference, 2),
        )


def serve_slide(path: Path, work: Path) -> tuple[Any, str, str]:
    """`aperture serve` on a fresh data dir with `path` uploaded as a slide: (server,
    slide id, bearer token)."""
    import httpx

    from tests.support.app import LiveServer, register

    server = LiveServer(work / "data").start()
    with httpx.Client(base_url=server.url, timeout=600) as client:
        headers = register(client)
        client.headers.update(headers)
        slide_id = upload_slide(client, path)
    token = headers["Authorization"].removeprefix("Bearer ")
    return server, slide_id, token


def upload_slide(client: Any, path: Path) -> str:
    """Upload `path`; its metadata job makes the slide record, whose id is returned."""
    from tests.support.app import wait_for_job

    with path.open("rb") as fh:
        stored = client.post("/api/v1/files", files={"file": (path.name, fh)}).json()
    jobs = client.get("/api/v1/jobs", params={"function": "metadata"}).json()["items"]
    job = next(j for j in jobs if j["params"]["file_id"] == stored["id"])
    wait_for_job(client, job["id"], timeout=300)
    slide = client.get("/api/v1/slides", params={"file_id": stored["id"]}).json()
    slide_id: str = slide["items"][0]["id"]
    return slide_id


def job_seconds(client: Any, token: str, params: dict[str, Any]) -> float:
    """Seconds from submitting a `tiles.pyramid` job to its finish event."""
    from websockets.sync.client import connect

    from tests.support.app import TERMINAL

    url = str(client.base_url.copy_with(scheme="ws", path="/api/v1/ws/jobs"))
    with connect(f"{url}?access_token={token}", open_timeout=60) as events:
        start = time.perf_counter()
        job = client.post("/api/v1/jobs", json={"function": "tiles.pyramid", "params": params})
        job_id = job.json()["id"]
        while True:
            event = json.loads(events.recv(timeout=1800))["event"]
            if event["job_id"] == job_id and event["status"] in TERMINAL:
                break
        seconds = time.perf_counter() - start
    done = client.get(f"/api/v1/jobs/{job_id}").json()
    if done["status"] != "succeeded":
        raise RuntimeError(f"pyramid job {done['status']}: {done['error']}")
    return seconds


def bench_pyramid_jobs(path: Path, work: Path, band_rows: int, repeats: int) -> None:
    """Each job builds a new slide's pyramid (the slide uploaded again, outside the
    timing), so it writes into an empty prefix as a slide's first pyramid does; every
    timed run, job or reference, starts with no dirty data left by the one before."""
    import os

    import httpx

    server, slide_id, token = serve_slide(path, work)
    bare, single = [], []
    try:
        with httpx.Client(
            base_url=server.url, timeout=600, headers={"Authorization": f"Bearer {token}"}
        ) as client:

            def params_for(slide_id: str) -> dict[str, Any]:
                file_id = client.get(f"/api/v1/slides/{slide_id}").json()["file_id"]
                return {"file_id": file_id, "slide_id": slide_id}

            for n in range(repeats):
                params = params_for(slide_id if n == 0 else upload_slide(client, path))
                os.sync()
                bare.append(pyramid_seconds(path, work, bare=True))
                os.sync()
                single.append(job_seconds(client, token, params))
            params = {**params_for(upload_slide(client, path)), "band_rows": band_rows}
            os.sync()
            fanned = job_seconds(client, token, params)
    finally:
        server.stop()
    size = image_size(path)
    emit(
        bench="tiles.pyramid.job",
        slide=size,
        workers=2,
        repeats=repeats,
        aperture_s=round(min(single), 2),
        reference="bare pyvips dzsave (no upload)",
        reference_s=round(min(bare), 2),
        ratio=round(min(single) / min(bare), 3),
        goal="<= 1.15",
        # best runs can pair a lucky reference with an unlucky job on a shared machine
        ratio_median=round(statistics.median(single) / statistics.median(bare), 3),
        all_aperture_s=[round(s, 2) for s in single],
        all_reference_s=[round(s, 2) for s in bare],
    )
    emit(
        bench="tiles.pyramid.fan_out",
        slide=size,
        workers=2,
        band_rows=band_rows,
        aperture_s=round(fanned, 2),
        reference="the same pyramid as one job (best run)",
        reference_s=round(min(single), 2),
        speedup=round(min(single) / fanned, 2),
    )


def image_size(path: Path) -> str:
    import pyvips

    image = pyvips.Image.new_from_file(str(path))
    return f"{image.width}x{image.height}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--slide", type=Path, help="reuse this synthetic slide")
    parser.add_argument("--skip-pyramid", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=2, help="pyramid runs per side (also with --jobs)"
    )
    parser.add_argument("--banded", action="store_true", help="also time the banded build")
    parser.add_argument("--http", help="API base URL, e.g. http://127.0.0.1:8000/api/v1")
    parser.add_argument("--slide-id", help="slide record id on that server (with --http)")
    parser.add_argument("--token", help="bearer token for --http")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start aperture serve with the slide and run the http bench",
    )
    parser.add_argument(
        "--jobs",
        action="store_true",
        help="time tiles.pyramid jobs on aperture serve (single, fanned)",
    )
    parser.add_argument("--band-rows", type=int, default=16, help="with --jobs")
    parser.add_argument(
        "--size", default="x".join(map(str, SIZE)), help="synthetic slide WIDTHxHEIGHT"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aperture-bench-") as tmp:
        work = Path(tmp)
        width, height = (int(v) for v in args.size.lower().split("x"))
        path = args.slide or make_slide(work / "bench.svs", width, height)
        if args.jobs:
            bench_pyramid_jobs(path, work, args.band_rows, args.repeats)
            return
        if args.serve:
            server, slide_id, token = serve_slide(path, work)
            try:
                bench_http(server.url + "/api/v1", slide_id, path, args.tiles, token)
            finally:
                server.stop()
            return
        if args.http:
            bench_http(args.http.rstrip("/"), args.slide_id, path, args.tiles, args.token)
            return
        bench_renderer(path, args.tiles)
        if not args.skip_pyramid:
            bench_pyramid(path, work, args.repeats, args.banded)


if __name__ == "__main__":
    main()
