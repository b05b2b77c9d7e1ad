"""Pre-generated Deep Zoom pyramids with libvips `dzsave`, in one job or in bands.

Single job: `dzsave` of the full-resolution image. Fan-out: the full-resolution Deep
Zoom level is cut into bands of tile rows, each written by its own `dzsave`
(`depth="one"`), and the lower levels come from one `dzsave` of the image halved exactly
the way `dzsave` halves it (2 x 2 mean, `(a + b + c + d + 2) // 4`, edges copied; the
halved image is a temporary raw file of a quarter of the full-resolution pixels). Both
give the same tiles, byte for byte: a band is cropped from one tile row above its first
row, so every tile it keeps sees the same pixels, overlap included, as in the single run.

Output layout (`name` = "slide"): `name.dzi` and `name_files/{level}/{col}_{row}.{ext}`.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.errors import JobCancelled, UnsupportedFile
from functions.slides.dzi import DziDescriptor
from functions.slides.geometry import DeepZoomGeometry
from functions.slides.tiff_levels import TIFF_VENDORS
from functions.slides.vips import pyvips as quiet_pyvips

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]
NAME = "slide"


class PyramidOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tile_size: int = Field(254, ge=1, le=4096)
    overlap: int = Field(1, ge=0, le=64)
    format: str = Field("jpeg", pattern="^(jpeg|png)$")
    quality: int = Field(75, ge=1, le=100)

    @property
    def suffix(self) -> str:
        if self.format == "jpeg":
            return f".jpeg[Q={self.quality},keep=none]"
        return ".png[keep=none]"

    def dzsave_args(self) -> dict[str, Any]:
        return {"tile_size": self.tile_size, "overlap": self.overlap, "suffix": self.suffix}


def open_level0(path: str | Path, workdir: Path) -> Any:
    """The slide's full-resolution image as a libvips image.

    TIFF-based slides are read directly; any other format OpenSlide reads is first
    written, strip by strip, to a raw file in `workdir` (composited on the background).
    """
    import openslide

    pyvips = quiet_pyvips()

    from functions.slides.handles import open_openslide

    osr = open_openslide(path)
    try:
        vendor = osr.properties.get("openslide.vendor")
        width, height = osr.dimensions
        if vendor in TIFF_VENDORS:
            image = pyvips.Image.tiffload(str(path), page=_level0_page(path, width, height))
            return image[:3] if image.bands > 3 else image
        return _openslide_raw(osr, workdir / "level0.raw", width, height)
    except openslide.OpenSlideError as exc:
        raise UnsupportedFile(f"{Path(path).name}: pixel data cannot be read: {exc}") from None
    finally:
        osr.close()


def _level0_page(path: str | Path, width: int, height: int) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages: list[Any] = list(tif.pages)
        for index, page in enumerate(pages):
            if page.is_tiled and (page.imagewidth, page.imagelength) == (width, height):
                return index
    raise UnsupportedFile(f"{Path(path).name}: no tiled full-resolution page")


def _openslide_raw(osr: Any, target: Path, width: int, height: int) -> Any:
    import numpy as np

    pyvips = quiet_pyvips()

    from functions.slides.handles import parse_background

    bg = np.asarray(parse_background(dict(osr.properties)), np.uint16)
    with target.open("wb") as out:
        for y in range(0, height, 512):
            rgba = np.asarray(osr.read_region((0, y), 0, (width, min(512, height - y))))
            a = rgba[..., 3:4].astype(np.uint16)
            out.write(
                ((rgba[..., :3] * a + bg * (255 - a) + 127) // 255).astype(np.uint8).tobytes()
            )
    return pyvips.Image.rawload(str(target), width, height, 3)


def halve(image: Any, target: Path, *, strip: int = 512, cancelled: Cancelled | None = None) -> Any:
    """`image` at half size, exactly as `dzsave` builds its next level: 2 x 2 means
    rounded `(a + b + c + d + 2) // 4`, odd edges extended by copying.

    Computed strip by strip with numpy into the raw file `target` (each source tile is
    decoded once; a lazy libvips graph of four shifted subsamples decodes each up to four
    times) and returned as a libvips image over that file.
    """
    import numpy as np

    pyvips = quiet_pyvips()

    if strip % 2:
        raise ValueError(f"strip must be even, got {strip}")
    w, h, bands = image.width, image.height, image.bands
    with target.open("wb") as out:
        for y in range(0, h, strip):
            if cancelled is not None and cancelled():
                raise JobCancelled()
            rows = min(strip, h - y)
            block = np.ndarray(
                buffer=image.crop(0, y, w, rows).write_to_memory(),
                dtype=np.uint8,
                shape=(rows, w, bands),
            )
            if rows % 2 or w % 2:
                block = np.pad(block, ((0, rows % 2), (0, w % 2), (0, 0)), mode="edge")
            wide = block.astype(np.uint16)
            total = wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2]
            out.write(((total + 2) >> 2).astype(np.uint8).tobytes())
    return pyvips.Image.rawload(str(target), (w + 1) // 2, (h + 1) // 2, bands)


def _watch(image: Any, cancelled: Cancelled | None, report: Callable[[float], None]) -> None:
    """Report dzsave's progress and stop it (`set_kill`) once cancellation is asked for."""
    image.set_progress(True)

    def on_eval(img: Any, progress: Any) -> None:
        report(min(1.0, progress.percent / 100))
        if cancelled is not None and cancelled():
            img.set_kill(True)

    image.signal_connect("eval", on_eval)


def _silent(fraction: float) -> None:
    """The report of a caller that asked for no progress."""


def progress_wanted(report: Callable[[float], None]) -> bool:
    return report is not _silent


def _dzsave(
    image: Any,
    base: Path,
    options: PyramidOptions,
    cancelled: Cancelled | None,
    report: Callable[[float], None],
    **extra: Any,
) -> None:
    pyvips = quiet_pyvips()

    if cancelled is not None or progress_wanted(report):
        image = image.copy()  # a private node, so signals and kill flags stay ours
        _watch(image, cancelled, report)
    try:
        image.dzsave(str(base), **options.dzsave_args(), **extra)
    except pyvips.Error as exc:
        if cancelled is not None and cancelled():
            raise JobCancelled() from None
        raise UnsupportedFile(f"dzsave failed: {exc}") from None
    if cancelled is not None and cancelled():
        raise JobCancelled()


def _finish(out_dir: Path, geometry: DeepZoomGeometry, options: PyramidOptions) -> Path:
    """Write our own .dzi (identical in both modes) and drop dzsave's side files."""
    (out_dir / f"{NAME}_files" / "vips-properties.xml").unlink(missing_ok=True)
    dzi = out_dir / f"{NAME}.dzi"
    dzi.write_text(DziDescriptor.from_geometry(geometry, options.format).to_xml())
    return dzi


@contextlib.contextmanager
def _scratch(path: Path) -> Iterator[Path]:
    """`path` as a new empty directory (leftovers of an earlier attempt removed), removed
    with whatever is in it on exit."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def full_geometry(image: Any, options: PyramidOptions) -> DeepZoomGeometry:
    return DeepZoomGeometry(
        [(image.width, image.height)], [1.0], tile_size=options.tile_size, overlap=options.overlap
    )


def build_pyramid(
    image: Any,
    out_dir: Path,
    options: PyramidOptions,
    *,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> Path:
    """The whole pyramid in one `dzsave`; returns the .dzi path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = (lambda f: progress(f, "dzsave")) if progress else _silent
    _dzsave(image, out_dir / NAME, options, cancelled, report)
    return _finish(out_dir, full_geometry(image, options), options)


def plan_bands(image: Any, options: PyramidOptions, rows_per_band: int) -> list[tuple[int, int]]:
    """Split the full-resolution level's tile rows into [start, stop) bands."""
    if rows_per_band < 1:
        raise ValueError(f"rows_per_band must be >= 1, got {rows_per_band}")
    rows = math.ceil(image.height / options.tile_size)
    return [(r, min(rows, r + rows_per_band)) for r in range(0, rows, rows_per_band)]


def build_band(
    image: Any,
    out_dir: Path,
    options: PyramidOptions,
    band: tuple[int, int],
    *,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> int:
    """Tiles of rows [start, stop) of the full-resolution level into
    `out_dir/slide_files/{top}/`; returns how many were written."""
    start, stop = band
    ts, ov = options.tile_size, options.overlap
    top = full_geometry(image, options).level_count - 1
    y0 = ts * (start - 1) if start > 0 else 0
    y1 = min(image.height, ts * stop + ov)
    report = (lambda f: progress(f, f"band rows {start}-{stop}")) if progress else _silent
    with _scratch(out_dir / f".band-{start}-{stop}") as work:
        _dzsave(
            image.crop(0, y0, image.width, y1 - y0),
            work / "band",
            options,
            cancelled,
            report,
            depth="one",
        )
        level_dir = out_dir / f"{NAME}_files" / str(top)
        level_dir.mkdir(parents=True, exist_ok=True)
        shift = start - 1 if start > 0 else 0
        written = 0
        for tile in (work / "band_files" / "0").iterdir():
            col, row = (int(v) for v in tile.stem.split("_"))
            if start <= row + shift < stop:
                tile.rename(level_dir / f"{col}_{row + shift}{tile.suffix}")
                written += 1
        return written


def build_lower_levels(
    image: Any,
    out_dir: Path,
    options: PyramidOptions,
    *,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> Path:
    """Every level below full resolution, from the exactly halved image; returns the .dzi."""
    geometry = full_geometry(image, options)
    if geometry.level_count > 1:
        report = (lambda f: progress(f, "lower levels")) if progress else _silent
        with _scratch(out_dir / ".lower") as work:
            half = halve(image, work / "half.raw", cancelled=cancelled)
            _dzsave(half, work / NAME, options, cancelled, report)
            files = out_dir / f"{NAME}_files"
            files.mkdir(parents=True, exist_ok=True)
            for level_dir in (work / f"{NAME}_files").iterdir():
                if level_dir.is_dir():
                    level_dir.rename(files / level_dir.name)
    return _finish(out_dir, geometry, options)


#: Concurrent uploads to a store that cannot adopt files: each tile is a small object,
#: so a pyramid's upload is bound by per-object latency (an S3 round trip), not bandwidth.
UPLOAD_THREADS = 8


@contextlib.contextmanager
def output_dir(objects: Any, scratch: Path) -> Iterator[Path]:
    """Where to build a pyramid bound for `objects`: a staging directory of the store
    when it has them (the directory store: `publish_tree` then renames the tiles into
    place instead of copying them), else a new directory under `scratch`. Whatever is
    still there on exit is removed."""
    staging = getattr(objects, "staging", None)
    if staging is not None:
        with staging() as path:
            yield path
        return
    with tempfile.TemporaryDirectory(
        dir=scratch, prefix="out-", ignore_cleanup_errors=True
    ) as path:
        yield Path(path)


def publish_tree(
    objects: Any,
    root: Path,
    prefix: str,
    *,
    cancelled: Cancelled | None = None,
    threads: int = UPLOAD_THREADS,
) -> int:
    """Store every file under `root` as `prefix/<relative path>`; returns the count.

    A store with `move_tree` (root from `output_dir`) takes the files by renaming them,
    consuming `root`, and makes them durable together. Otherwise each file is uploaded,
    `threads` at a time, with cancellation checked between files.
    """
    if cancelled is not None and cancelled():
        raise JobCancelled()
    if not root.is_dir():  # nothing built: the lower levels of a one-level pyramid
        return 0
    move_tree = getattr(objects, "move_tree", None)
    if move_tree is not None:
        count: int = move_tree(root, prefix)
        return count
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted(p for p in root.rglob("*") if p.is_file())

    def put(path: Path) -> None:
        if cancelled is not None and cancelled():
            raise JobCancelled()
        key = f"{prefix.rstrip('/')}/{path.relative_to(root).as_posix()}"
        objects.put_file(key, path, content_type=_content_type(path.suffix))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(put, path) for path in paths]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return len(paths)


def _content_type(suffix: str) -> str:
    return {".jpeg": "image/jpeg", ".png": "image/png", ".dzi": "application/xml"}.get(
        suffix, "application/octet-stream"
    )
