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
- http (with --http): Deep Zoom tiles over HTTP from `aperture serve` (embedded
  defaults: SQLite, directory store, default web processes, JSON logs, a bearer token on
  every request) against the peer a CytoLens user would run instead: OpenSlide's example
  Deep Zoom server, a small Flask app (`DeepZoomGenerator` + Pillow JPEG q75, Flask's
  threaded server; `--peer` runs it). One client harness (`http_load`) for both: 8
  keep-alive connections fetching the same addresses of a 12,000 x 9,000 JPEG pyramid
  from the project's synthetic slide generator. Cold: every address once, never asked
  before (addresses drawn level first, without repeats); warm: the same addresses again.
  The two servers run side by side and take turns, one block of addresses each, so both
  see the same load from the rest of the machine. Goal: >= 2.5x the peer cold, >= 5x warm,
  p99 <= 50 ms. `--server-repo DIR` serves another checkout (the code before a change).
  Each line also gives both servers' CPU per tile (all their processes, from /proc) and
  its ratio: on a busy shared machine tiles/s swing with the load, CPU per tile much less.

    uv run python tests/bench/bench_tiles.py --http [--size 12000x9000] [--tiles 1000]

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
import io
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

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


PEER_TILE = 254
PEER_OVERLAP = 1


def peer_main(slide: Path, port: int) -> None:
    """The peer: OpenSlide's example Deep Zoom server, reduced to one slide (its tile
    route as the example writes it), run by Flask's threaded server."""
    import logging

    import openslide
    from flask import Flask, abort, make_response
    from openslide.deepzoom import DeepZoomGenerator

    app = Flask("deepzoom-peer")
    generator = DeepZoomGenerator(
        openslide.OpenSlide(slide), PEER_TILE, PEER_OVERLAP, limit_bounds=False
    )

    @app.route("/slide.dzi")
    def dzi() -> Any:
        response = make_response(generator.get_dzi("jpeg"))
        response.mimetype = "application/xml"
        return response

    @app.route("/slide_files/<int:level>/<int:col>_<int:row>.<fmt>")
    def tile(level: int, col: int, row: int, fmt: str) -> Any:
        fmt = fmt.lower()
        if fmt not in ("jpeg", "png"):
            abort(404)
        try:
            image = generator.get_tile(level, (col, row))
        except ValueError:
            abort(404)
        buffer = io.BytesIO()
        image.save(buffer, fmt, quality=75)
        response = make_response(buffer.getvalue())
        response.mimetype = f"image/{fmt}"
        return response

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=port, threaded=True)


def start_peer(slide: Path, work: Path) -> tuple[Any, int]:
    import subprocess
    import sys

    import httpx

    from tests.support.app import free_port

    port = free_port()
    log = (work / "peer.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, __file__, "--peer", str(slide), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/slide.dzi", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the peer did not start")


def cold_addresses(path: Path, n: int, seed: int = 0) -> list[Address]:
    """`n` distinct addresses: a level drawn uniformly among those with tiles left, then
    a tile of it not drawn before (every address is cold in both servers)."""
    from functions.slides.handles import SlideHandle

    geometry = SlideHandle(path).geometry(PEER_TILE, PEER_OVERLAP, False)
    rng = random.Random(seed)
    left = {
        level: [(level, c, r) for c in range(cols) for r in range(rows)]
        for level, (cols, rows) in enumerate(geometry.level_tiles)
    }
    out: list[Address] = []
    while len(out) < n and left:
        level = rng.choice(sorted(left))
        tiles = left[level]
        out.append(tiles.pop(rng.randrange(len(tiles))))
        if not tiles:
            del left[level]
    return out


Server = tuple[int, int, str, dict[str, str]]  # process id, port, path prefix, headers


def alternate(
    servers: dict[str, Server], addresses: list[Address], block: int
) -> tuple[dict[str, Any], dict[str, float], dict[str, dict[str, float]]]:
    """Each server fetches every address, the servers taking turns block by block (the
    first to go alternates too); per server the merged LoadResult, the CPU seconds its
    processes used meanwhile, and those seconds by kind of thread (`main`: event loops,
    `other`: thread pools such as the tile renderers, `libvips`: its workers)."""
    from tests.bench.http_load import LoadResult, run, tree_cpu_seconds, tree_thread_cpu_seconds

    merged = {name: LoadResult(seconds=0.0) for name in servers}
    cpu = dict.fromkeys(servers, 0.0)
    split: dict[str, dict[str, float]] = {name: {} for name in servers}
    order = list(servers)
    for start in range(0, len(addresses), block):
        chunk = addresses[start : start + block]
        for name in order:
            pid, port, prefix, headers = servers[name]
            paths = [f"{prefix}_files/{lv}/{c}_{r}.jpeg" for lv, c, r in chunk]
            before, threads_before = tree_cpu_seconds(pid), tree_thread_cpu_seconds(pid)
            result = run("127.0.0.1", port, paths, clients=HTTP_CLIENTS, headers=headers)
            cpu[name] += tree_cpu_seconds(pid) - before
            for kind, seconds in tree_thread_cpu_seconds(pid).items():
                used = seconds - threads_before.get(kind, 0.0)
                split[name][kind] = split[name].get(kind, 0.0) + used
            total = merged[name]
            total.seconds += result.seconds
            total.latencies += result.latencies
            total.bytes += result.bytes
            for status, count in result.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
        order.reverse()
    return merged, cpu, split


HTTP_CLIENTS = 8


def bench_http(
    path: Path, work: Path, n: int, server_repo: Path | None, web_workers: int | None
) -> None:
    import os

    server, slide_id, token = serve_slide(path, work, server_repo, web_workers)
    peer, peer_port = start_peer(path, work)
    try:
        servers: dict[str, Server] = {
            "aperture": (
                server.process.pid,
                server.port,
                f"/api/v1/viewer/{slide_id}",
                {"Authorization": f"Bearer {token}"},
            ),
            "peer": (peer.pid, peer_port, "/slide", {}),
        }
        from tests.bench.http_load import run

        for _, port, prefix, headers in servers.values():  # open the slide outside the timing
            run("127.0.0.1", port, [f"{prefix}.dzi"], clients=1, headers=headers)
        addresses = cold_addresses(path, n)
        for phase in ("cold", "warm"):
            results, cpu, split = alternate(servers, addresses, block=max(50, n // 10))
            ours, theirs = results["aperture"], results["peer"]
            ours_cpu, theirs_cpu = (1000 * cpu[name] / len(addresses) for name in servers)
            for name, result in results.items():
                if set(result.statuses) != {200}:
                    raise RuntimeError(f"{name} answered {result.statuses}")
            emit(
                bench="tiles.http",
                phase=phase,
                server="base" if server_repo else "this checkout",
                web_workers=web_workers or "default",
                clients=HTTP_CLIENTS,
                tiles=len(addresses),
                slide=image_size(path),
                settings="254/1 jpeg q75, embedded defaults, bearer token",
                aperture_tiles_per_s=round(ours.rate, 1),
                aperture_p50_ms=ours.percentile_ms(0.5),
                aperture_p99_ms=ours.percentile_ms(0.99),
                reference="OpenSlide example Deep Zoom server (Flask threaded + DeepZoomGenerator)",
                reference_tiles_per_s=round(theirs.rate, 1),
                reference_p50_ms=theirs.percentile_ms(0.5),
                reference_p99_ms=theirs.percentile_ms(0.99),
                ratio=round(ours.rate / theirs.rate, 2),
                goal=">= 2.5 cold, >= 5 warm, aperture p99 <= 50 ms",
                # CPU per tile of each server's processes: less disturbed by other load
                aperture_cpu_ms_per_tile=round(ours_cpu, 2),
                reference_cpu_ms_per_tile=round(theirs_cpu, 2),
                cpu_ratio=round(theirs_cpu / ours_cpu, 2) if ours_cpu else None,
                # where Aperture's CPU per tile goes: event loops vs renderers
                aperture_cpu_ms_per_tile_by_thread={
                    kind: round(1000 * seconds / len(addresses), 2)
                    for kind, seconds in sorted(split["aperture"].items())
                },
                load_average=round(os.getloadavg()[0], 1),
            )
    finally:
        peer.terminate()
        peer.wait(timeout=10)
        server.stop()


def serve_slide(
    path: Path, work: Path, server_repo: Path | None = None, web_workers: int | None = None
) -> tuple[Any, str, str]:
    """`aperture serve` on a fresh data dir with `path` uploaded as a slide: (server,
    slide id, bearer token). With `server_repo`, that checkout's server (as it was: no
    options it may not know). Embedded defaults otherwise: JSON logs, the default
    heartbeat and number of web processes."""
    import httpx

    from tests.support.app import REPO, LiveServer, register

    env = {"APERTURE_LOG_FORMAT": "json", "APERTURE_HEARTBEAT_INTERVAL_S": "2.0"}
    server = LiveServer(work / "data", env=env, repo=server_repo or REPO)
    server.start(web_workers=web_workers)
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
    parser.add_argument(
        "--http", action="store_true", help="tiles over HTTP: aperture serve vs the peer"
    )
    parser.add_argument("--server-repo", type=Path, help="with --http: serve this checkout")
    parser.add_argument("--web-workers", type=int, help="with --http: web processes")
    parser.add_argument("--peer", type=Path, help=argparse.SUPPRESS)  # run the peer server
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--jobs",
        action="store_true",
        help="time tiles.pyramid jobs on aperture serve (single, fanned)",
    )
    parser.add_argument("--band-rows", type=int, default=16, help="with --jobs")
    parser.add_argument(
        "--size", help="synthetic slide WIDTHxHEIGHT (50000x40000; with --http 12000x9000)"
    )
    args = parser.parse_args()
    if args.peer:
        peer_main(args.peer, args.port)
        return
    with tempfile.TemporaryDirectory(prefix="aperture-bench-") as tmp:
        work = Path(tmp)
        size = args.size or ("12000x9000" if args.http else "x".join(map(str, SIZE)))
        width, height = (int(v) for v in size.lower().split("x"))
        path = args.slide or make_slide(work / "bench.svs", width, height)
        if args.jobs:
            bench_pyramid_jobs(path, work, args.band_rows, args.repeats)
            return
        if args.http:
            bench_http(path, work, args.tiles, args.server_repo, args.web_workers)
            return
        bench_renderer(path, args.tiles)
        if not args.skip_pyramid:
            bench_pyramid(path, work, args.repeats, args.banded)


if __name__ == "__main__":
    main()
