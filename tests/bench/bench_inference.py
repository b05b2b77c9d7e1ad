"""Whole-slide inference: builtin nuclei-he end to end through the job against
HistomicsTK's own pipeline; viewport queries against loading the whole GeoJSON; peak
memory of a region worker on two slide sizes.

    uv run python tests/bench/bench_inference.py [--size 20000] [--small 6000]
        [--reference-tiles 12] [--objects 10000,100000,1000000] [--queries 200]
        [--skip-slide] [--skip-viewport] [--skip-memory]

Slides: `write_he_slide` (0.5 µm/px, seed 0), cached under $APERTURE_BENCH_DIR
(default /tmp/aperture-bench); generation time is reported when a slide is made.

- e2e: `inference.slide` with nuclei-he (defaults) through the real job machinery
  (SQLite, directory store, one local worker process, one region: everything on one
  core apart from libvips' helper threads): tissue mask, tiling, seams, merge, Parquet,
  GeoJSON, summary. Figures: tissue megapixels (at the model's 0.5 µm/px) per second
  of the job's wall time (one worker = one core) and nuclei per second; F1 and median
  area error against the truth over the whole slide.
- reference: HistomicsTK 1.4's pipeline as its NucleiDetection CLI runs it per tile:
  `reinhard` (reference LAB statistics of the CLI, source statistics = the slide's,
  the same as ours), `color_deconvolution` with the H&E stain matrix
  (hematoxylin, eosin, null), foreground = hematoxylin < 60, `detect_nuclei_kofahi`
  with the CLI defaults (min_radius 6, max_radius 20, min_nucleus_area 80,
  local_max_search_radius 10), over `--reference-tiles` of the same 1024-pixel tissue
  tiles (evenly spread), in its own environment, one process. Its rate: the tiles'
  tissue megapixels per second of wall time (tiles given as arrays: reading and
  writing excluded, which favours it). F1 of both sides over those tiles' cores.
  `ratio` = our e2e rate / its rate; `ratio_cpu_time` compares CPU seconds per tile
  of the two kernels (ours: `run_tiles` in this process), which other load on the
  machine distorts less.
- viewport: n objects (12-vertex outlines, one per 1,600 px², the density of the
  slide) written by the merge (Parquet in Hilbert-ordered row groups + GeoJSON), then
  `--queries` random 2,000 x 2,000 bbox queries (`viewport_geojson`, index cached;
  the first query reported apart); reference: `json.load` of the whole GeoJSON then
  the same filter (the time of one such load). Goal p99 <= 100 ms at 10^6.
- memory: peak RSS (VmHWM) of a fresh process running one region of 16 tissue tiles
  (`inference.region`'s body: tissue mask, colour statistics, model, tiles), on the
  `--small` and the `--size` slide.

HistomicsTK is not a project dependency. The bench makes its environment once (or
uses $APERTURE_HTK_PYTHON): `uv venv /tmp/aperture-bench/htk-venv` then
`uv pip install --no-deps histomicstk==1.4.0 girder-slicer-cli-web` and
`uv pip install numpy scipy scikit-image pandas shapely scikit-learn imageio
matplotlib pillow large-image ctk-cli` (what `import histomicstk` and its
nuclear-segmentation modules import; its full dependency set pulls GDAL-based
large-image sources and girder, which this machine does not need).

Prints one JSON line per measurement. Noisy on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH = Path(os.environ.get("APERTURE_BENCH_DIR", "/tmp/aperture-bench"))
HTK_VENV = BENCH / "htk-venv"
HTK_PACKAGES = [
    "numpy",
    "scipy",
    "scikit-image",
    "pandas",
    "shapely",
    "scikit-learn",
    "imageio",
    "matplotlib",
    "pillow",
    "large-image",
    "ctk-cli",
]


def emit(**fields: Any) -> None:
    print(
        json.dumps(fields, default=lambda v: v.item() if hasattr(v, "item") else str(v)), flush=True
    )


def slide_for(size: int) -> tuple[Path, Path]:
    from functions.inference.synthetic import write_he_slide

    path = BENCH / f"he-{size}-seed0.svs"
    truth = BENCH / f"he-{size}-seed0.truth.json"
    if not (path.exists() and truth.exists()):
        BENCH.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_he_slide(path, width=size, height=size, seed=0, truth_path=truth)
        emit(
            bench="inference.synthetic_slide",
            size=size,
            seconds=round(time.perf_counter() - started, 1),
        )
    return path, truth


def load_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = json.loads(path.read_text())["nuclei"]
    return (
        np.array([n["centroid"] for n in data]),
        np.array([n["equivalent_radius_px"] for n in data]),
        np.array([n["area_px"] for n in data]),
    )


def match(
    truth: np.ndarray, radius: np.ndarray, found: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    from tests.functions.inference.scoring import match as score

    s = score(truth, radius, found)
    return s.f1, s.truth_index, s.detection_index


# --- end to end through the job ----------------------------------------------------


def run_job(slide: Path, tmp: Path) -> tuple[dict[str, Any], Any, float]:
    """inference.slide through a real one-worker pool; (result, objects table, wall s)."""
    import pyarrow.parquet as pq

    from common.executors.local import LocalExecutor
    from common.jobs.service import JobService
    from common.records import migrate
    from common.runtime import Runtime
    from tests.support.app import make_settings

    runtime = Runtime.from_settings(make_settings(tmp / "data", workers=1, extra_capabilities=[]))
    migrate(runtime.engine)
    executor = LocalExecutor(runtime)
    executor.start()
    try:
        service = JobService(runtime, executor)
        service.submit("noop", {}, owner_id=None)  # warm the worker (imports) first
        with slide.open("rb") as f:
            stored = runtime.files.add(f, name=slide.name, owner_id=None)
        time.sleep(2)
        started = time.perf_counter()
        job = service.submit(
            "inference.slide",
            {"file_id": str(stored.id), "tiles_per_region": 10_000},
            owner_id=None,
        )
        while not (job := runtime.jobs.get(job.id)).status.terminal:
            time.sleep(0.2)
        wall = time.perf_counter() - started
        if job.result is None:
            raise RuntimeError(f"inference failed: {job.error}")
        parquet = runtime.files.get(uuid.UUID(job.result["parquet_file_id"]))
        out = tmp / "objects.parquet"
        out.write_bytes(runtime.objects.get_bytes(parquet.key))
        return job.result, pq.read_table(out), wall
    finally:
        executor.stop()
        runtime.close()


# --- HistomicsTK ---------------------------------------------------------------------

HTK_SCRIPT = r"""
import json, sys, time
import numpy as np
import warnings
warnings.simplefilter("ignore")
from skimage.measure import regionprops
from histomicstk.preprocessing.color_normalization import reinhard
from histomicstk.preprocessing.color_deconvolution import color_deconvolution, stain_color_map
from histomicstk.segmentation.nuclear import detect_nuclei_kofahi
tiles = np.load(sys.argv[1])
mu, sigma = json.loads(sys.argv[2])
ref_mu, ref_sigma = [8.63234435, -0.11501964, 0.03868433], [0.57506023, 0.10403329, 0.01364062]
w = np.array([stain_color_map["hematoxylin"], stain_color_map["eosin"], stain_color_map["null"]]).T
for i in range(tiles.shape[0]):
    tile = tiles[i]
    wall, cpu = time.perf_counter(), time.process_time()
    normalized = reinhard(tile, ref_mu, ref_sigma, src_mu=mu, src_sigma=sigma)
    stains = color_deconvolution(normalized, w).Stains
    hema = stains[:, :, 0].astype(float)
    labels = detect_nuclei_kofahi(hema, hema < 60, 6, 20, 80, 10)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cents = [[p.centroid[1] + 0.5, p.centroid[0] + 0.5] for p in regionprops(labels)]
    print(json.dumps({"tile": i, "wall": wall, "cpu": cpu, "centroids": cents}), flush=True)
"""


def htk_python() -> str:
    given = os.environ.get("APERTURE_HTK_PYTHON")
    if given:
        return given
    python = HTK_VENV / "bin" / "python"
    if not python.exists():
        env = {**os.environ, "VIRTUAL_ENV": str(HTK_VENV)}
        subprocess.run(
            [
                "uv",
                "venv",
                "-q",
                "-p",
                f"{sys.version_info.major}.{sys.version_info.minor}",
                str(HTK_VENV),
            ],
            check=True,
        )
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "histomicstk==1.4.0",
                "girder-slicer-cli-web",
            ],
            check=True,
            env=env,
        )
        subprocess.run(["uv", "pip", "install", "-q", *HTK_PACKAGES], check=True, env=env)
    return str(python)


def reference_tiles(
    slide: Path, summary: dict[str, Any], count: int
) -> tuple[list[tuple[int, int]], np.ndarray, Any, Any]:
    from functions.inference.nuclei_he import declaration
    from functions.inference.tiling import SlideReader, TileGrid
    from functions.inference.tissue import tissue_mask

    io = declaration()
    reader = SlideReader(slide)
    grid = TileGrid(*reader.dimensions, scale=1.0, tile=io.tile, overlap=io.overlap)
    tissue = tissue_mask(reader, 0.5)
    tiles = tissue.touching(grid)
    picked = [tiles[i] for i in np.linspace(0, len(tiles) - 1, count).astype(int)]
    pixels = np.stack([reader.read_tile(grid, c, r) for c, r in picked])
    return picked, pixels, grid, tissue


def tissue_mpx(grid: Any, tissue: Any, tiles: list[tuple[int, int]]) -> float:
    """Tissue megapixels (model resolution) in the tiles' cores (each pixel counted once)."""
    total = 0.0
    for col, row in tiles:
        x0, y0, x1, y1 = _core_box(grid, col, row)
        yy, xx = np.mgrid[y0:y1:4, x0:x1:4]
        total += tissue.contains(xx + 0.5, yy + 0.5).sum() * 16
    return total / 1e6


def _core_box(grid: Any, col: int, row: int) -> tuple[int, int, int, int]:
    w, h = grid.model_size
    x0, y0, x1, y1 = grid.core(col, row)
    return int(max(x0, 0)), int(max(y0, 0)), int(min(x1, w)), int(min(y1, h))


def in_cores(points: np.ndarray, grid: Any, tiles: list[tuple[int, int]]) -> np.ndarray:
    keep = np.zeros(len(points), bool)
    for col, row in tiles:
        x0, y0, x1, y1 = _core_box(grid, col, row)
        keep |= (
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        )
    return keep


def bench_slide(size: int, reference: int, tmp: Path, *, with_reference: bool) -> None:
    slide, truth_path = slide_for(size)
    truth, radius, area = load_truth(truth_path)
    result, table, wall = run_job(slide, tmp)
    summary = result["summary"]
    found = np.stack([table["centroid_x"].to_numpy(), table["centroid_y"].to_numpy()], 1)
    f1, ti, di = match(truth, radius, found)
    area_error = np.median(np.abs(table["area_um2"].to_numpy()[di] / 0.25 - area[ti]) / area[ti])
    tissue = summary["tissue_area_mm2"] / (0.5e-3) ** 2 / 1e6  # mm² -> Mpx at 0.5 µm/px
    ours = tissue / wall
    line: dict[str, Any] = {
        "bench": "inference.nuclei_he.e2e",
        "size": size,
        "tiles": summary["tiles"],
        "tissue_mpx": round(tissue, 1),
        "seconds": round(wall, 1),
        "tissue_mpx_per_s_per_core": round(ours, 3),
        "nuclei": summary["objects"],
        "nuclei_per_s": round(summary["objects"] / wall, 1),
        "f1": round(f1, 4),
        "area_error_median": round(float(area_error), 4),
        "timing_s": summary["timing_s"],
    }
    if not with_reference:
        emit(**line)
        return
    tiles, pixels, grid, mask = reference_tiles(slide, summary, reference)
    npy = tmp / "tiles.npy"
    np.save(npy, pixels)
    stats = summary["stain_stats"]
    run = subprocess.run(
        [
            htk_python(),
            "-c",
            HTK_SCRIPT,
            str(npy),
            json.dumps([stats["mu_lab"], stats["sigma_lab"]]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    ref_wall = sum(r["wall"] for r in rows)
    ref_cpu = sum(r["cpu"] for r in rows)
    ref_points = np.concatenate(
        [
            np.asarray(r["centroids"]).reshape(-1, 2) + np.array(grid.origin(*tiles[r["tile"]]))
            for r in rows
        ]
    )
    ref_points = ref_points[in_cores(ref_points, grid, tiles)]
    wanted = in_cores(truth, grid, tiles)
    ref_f1, _, _ = match(truth[wanted], radius[wanted], ref_points)
    our_f1_tiles, _, _ = match(truth[wanted], radius[wanted], found[in_cores(found, grid, tiles)])
    mpx = tissue_mpx(grid, mask, tiles)
    theirs = mpx / ref_wall
    kernel_cpu = our_kernel_cpu(slide, grid, mask, tiles, stats)
    emit(
        **line,
        reference="histomicstk 1.4 reinhard + color_deconvolution + threshold 60 + "
        "detect_nuclei_kofahi (CLI defaults), per tile, one process",
        reference_tiles=len(tiles),
        reference_tissue_mpx_per_s_per_core=round(theirs, 3),
        reference_f1_same_tiles=round(ref_f1, 4),
        f1_same_tiles=round(our_f1_tiles, 4),
        ratio=round(ours / theirs, 2),
        cpu_s_per_tile=round(kernel_cpu / len(tiles), 3),
        reference_cpu_s_per_tile=round(ref_cpu / len(tiles), 3),
        ratio_cpu_time=round(ref_cpu / kernel_cpu, 2),
    )


def our_kernel_cpu(
    slide: Path, grid: Any, tissue: Any, tiles: list[tuple[int, int]], stats: dict[str, Any]
) -> float:
    """CPU seconds of `run_tiles` (read, segment, outline, seam rule) over the tiles."""
    from functions.inference.engine import run_tiles
    from functions.inference.nuclei_he import NucleiHE, NucleiHEParams
    from functions.inference.tiling import SlideReader

    with SlideReader(slide) as reader:
        model = NucleiHE(NucleiHEParams(), stats["mu_lab"], stats["sigma_lab"])
        run_tiles(model, reader, grid, tiles[:1], tissue=tissue)  # warm the colour table
        started = time.process_time()
        run_tiles(model, reader, grid, tiles, tissue=tissue, confidence_threshold=0.5)
        return time.process_time() - started


# --- viewport queries ----------------------------------------------------------------


def synthetic_regions(n: int, tmp: Path) -> tuple[list[Path], float]:
    import pyarrow.parquet as pq

    from functions.inference.objects import Objects
    from functions.inference.outputs import objects_table

    side = float(np.sqrt(n * 1600.0))
    bands = max(1, n // 50_000)
    rng = np.random.default_rng(n)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], 1)
    paths = []
    for b in range(bands):
        m = n // bands + (1 if b < n % bands else 0)
        centre = np.column_stack(
            [rng.uniform(b * side / bands, (b + 1) * side / bands, m), rng.uniform(0, side, m)]
        )
        radius = rng.uniform(5, 11, m)
        polygons = list(centre[:, None, :] + radius[:, None, None] * unit[None])
        area = np.pi * radius**2 * 0.25
        objects = Objects(
            polygons=polygons,
            centroid=centre,
            confidence=rng.uniform(0.3, 1, m).astype(np.float32),
            label=rng.integers(0, 2, m).astype(np.int16),
            area_um2=area,
            measurements={"centroid_x": centre[:, 0], "centroid_y": centre[:, 1], "area_um2": area},
            tile=np.tile(np.array([b, 0], np.int32), (m, 1)),
        )
        paths.append(tmp / f"region-{b}.parquet")
        pq.write_table(
            objects_table(objects, ("tumor", "immune"), ("centroid_x", "centroid_y", "area_um2")),
            paths[-1],
        )
    return paths, side


def bench_viewport(n: int, queries: int, tmp: Path) -> None:
    from functions.inference.merge import merge_regions
    from functions.inference.query import viewport_geojson

    regions, side = synthetic_regions(n, tmp)
    parquet, geojson = tmp / f"objects-{n}.parquet", tmp / f"objects-{n}.geojson"
    started = time.perf_counter()
    merge_regions(regions, parquet, geojson, {"tumor": "#d63f2f", "immune": "#2f6fd6"})
    merge_s = time.perf_counter() - started
    rng = np.random.default_rng(7)
    boxes = [
        (x, y, x + 2000.0, y + 2000.0)
        for x, y in rng.uniform(0, max(1.0, side - 2000), (queries + 1, 2))
    ]
    key = f"bench-{n}"
    times, sizes = [], []
    for box in boxes:
        t = time.perf_counter()
        body = b"".join(viewport_geojson(parquet, bbox=box, cache_key=key))
        times.append(time.perf_counter() - t)
        sizes.append(len(body))
    first, warm = times[0], np.array(times[1:])
    check = json.loads(body)
    line: dict[str, Any] = {
        "bench": "inference.viewport",
        "objects": n,
        "bbox": 2000,
        "queries": queries,
        "features_per_query_mean": round(float(np.mean([len(check["features"])])), 1),
        "p50_ms": round(float(np.percentile(warm, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(warm, 99)) * 1000, 2),
        "first_query_ms": round(first * 1000, 2),
        "parquet_mb": round(parquet.stat().st_size / 1e6, 1),
        "geojson_mb": round(geojson.stat().st_size / 1e6, 1),
        "merge_objects_per_s": round(n / merge_s),
        "reference": "json.load of the whole GeoJSON, then the same bbox filter",
    }
    if _available_gib() > 4 + geojson.stat().st_size / 1e9 * 12:
        t = time.perf_counter()
        with geojson.open("rb") as f:
            data = json.load(f)
        x0, y0, x1, y1 = boxes[-1]
        hits = 0
        for feature in data["features"]:
            ring = feature["geometry"]["coordinates"][0]
            xs, ys = [p[0] for p in ring], [p[1] for p in ring]
            hits += min(xs) < x1 and max(xs) > x0 and min(ys) < y1 and max(ys) > y0
        reference = time.perf_counter() - t
        line.update(
            reference_ms=round(reference * 1000, 1),
            ratio_p50=round(reference / float(np.percentile(warm, 50)), 1),
            reference_hits_last_box=hits,
            hits_last_box=len(check["features"]),
        )
        del data
    else:
        line.update(reference_ms=None, reference_skipped="not enough free memory to json.load it")
    emit(**line)


def _available_gib() -> float:
    for row in Path("/proc/meminfo").read_text().splitlines():
        if row.startswith("MemAvailable:"):
            return int(row.split()[1]) / 2**20
    return 0.0


# --- memory of a region worker -------------------------------------------------------

MEMORY_SCRIPT = r"""
import sys, json
sys.path.insert(0, sys.argv[3])
from functions.inference.engine import run_tiles
from functions.inference.nuclei_he import NucleiHE, NucleiHEParams, declaration
from functions.inference.stains import reinhard_stats
from functions.inference.tiling import SlideReader, TileGrid, plan_regions
from functions.inference.tissue import tissue_mask, sample_tissue_pixels
reader = SlideReader(sys.argv[1])
io = declaration()
grid = TileGrid(*reader.dimensions, scale=1.0, tile=io.tile, overlap=io.overlap)
tissue = tissue_mask(reader, 0.5)
tiles = tissue.touching(grid)
mu, sigma = reinhard_stats(sample_tissue_pixels(reader, grid, tissue, tiles))
middle = len(tiles) // 2  # the slide's middle: tissue-rich on both sizes
region = tiles[max(0, middle - int(sys.argv[2]) // 2) :][: int(sys.argv[2])]
model = NucleiHE(NucleiHEParams(), mu, sigma)
found = run_tiles(model, reader, grid, region, tissue=tissue, confidence_threshold=0.5)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report
# its parent's peak (the bench holds the large slide's truth).
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"tiles": len(region), "objects": len(found), "peak_rss_mib": int(hwm) / 1024}))
"""


def bench_memory(sizes: list[int]) -> None:
    peaks, objects = [], []
    for size in sizes:
        slide, _ = slide_for(size)
        run = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(slide), "16", str(REPO)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(run.stdout.strip().splitlines()[-1])
        peaks.append(round(row["peak_rss_mib"], 1))
        objects.append(row["objects"])
    emit(
        bench="inference.region_memory",
        sizes=sizes,
        tiles=16,
        objects=objects,
        peak_rss_mib=peaks,
        ratio=round(peaks[0] / peaks[-1], 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=6_000)
    parser.add_argument("--reference-tiles", type=int, default=12)
    parser.add_argument("--objects", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-slide", action="store_true")
    parser.add_argument("--skip-viewport", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aperture-bench-inference-") as tmp:
        if not args.skip_slide:
            bench_slide(args.small, args.reference_tiles, Path(tmp) / "small", with_reference=False)
            bench_slide(args.size, args.reference_tiles, Path(tmp) / "large", with_reference=True)
        if not args.skip_viewport:
            for n in (int(v) for v in args.objects.split(",")):
                bench_viewport(n, args.queries, Path(tmp))
        if not args.skip_memory:
            bench_memory([args.small, args.size])


if __name__ == "__main__":
    main()
