"""Rendered tiles against DeepZoomGenerator.get_tile; JPEG pass-through; low levels."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from functions.slides.handles import SlideHandle
from functions.slides.render import passthrough_tile, render_tile, resize

MAX_MAD = 2.0


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def pil_jpeg(image: Image.Image, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return decode(buffer.getvalue())


def every_tile(dz: DeepZoomGenerator) -> list[tuple[int, int, int]]:
    return [
        (level, col, row)
        for level in range(dz.level_count)
        for col in range(dz.level_tiles[level][0])
        for row in range(dz.level_tiles[level][1])
    ]


@pytest.mark.parametrize(("tile_size", "overlap"), [(254, 1), (256, 0)])
@pytest.mark.parametrize("name", ["boxes", "synthetic"])
def test_every_png_tile_matches_deepzoomgenerator(
    request: pytest.FixtureRequest, name: str, tile_size: int, overlap: int
) -> None:
    path = request.getfixturevalue(name)
    dz = DeepZoomGenerator(openslide.OpenSlide(path), tile_size, overlap)
    handle = SlideHandle(path)
    geometry = handle.geometry(tile_size, overlap, False)
    worst = 0.0
    for level, col, row in every_tile(dz):
        ours = decode(render_tile(handle, geometry, level, col, row, fmt="png"))
        reference = np.asarray(dz.get_tile(level, (col, row))).astype(np.int16)
        assert ours.shape == reference.shape, (level, col, row)
        worst = max(worst, float(np.abs(ours - reference).mean()))
    assert worst <= MAX_MAD


def test_jpeg_tiles_lose_no_more_than_deepzoomgenerator_plus_pillow(synthetic: Path) -> None:
    """JPEG q75 alone moves this noisy texture by ~2 grey levels, so compare losses: ours
    against the raw reference tile, versus Pillow's q75 encoding of that same tile."""
    dz = DeepZoomGenerator(openslide.OpenSlide(synthetic), 254, 1)
    handle = SlideHandle(synthetic)
    geometry = handle.geometry(254, 1, False)
    for level, col, row in every_tile(dz):
        ours = decode(render_tile(handle, geometry, level, col, row, fmt="jpeg", quality=75))
        tile = dz.get_tile(level, (col, row))
        reference = np.asarray(tile).astype(np.int16)
        assert ours.shape == reference.shape
        ours_loss = np.abs(ours - reference).mean()
        pillow_loss = np.abs(pil_jpeg(tile) - reference).mean()
        assert ours_loss <= pillow_loss + 0.5, (level, col, row, ours_loss, pillow_loss)


def test_openslide_fallback_matches_too(boxes: Path) -> None:
    dz = DeepZoomGenerator(openslide.OpenSlide(boxes), 254, 1)
    handle = SlideHandle(boxes)
    handle.tiff = None  # read through OpenSlide, as for NDPI, MRXS, DICOM ...
    geometry = handle.geometry(254, 1, False)
    for level, col, row in every_tile(dz):
        ours = decode(render_tile(handle, geometry, level, col, row, fmt="png"))
        reference = np.asarray(dz.get_tile(level, (col, row))).astype(np.int16)
        assert np.abs(ours - reference).mean() <= MAX_MAD


def stored_jpeg(path: Path, page: int, index: int) -> bytes:
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        tif.filehandle.seek(p.dataoffsets[index])
        raw = tif.filehandle.read(p.databytecounts[index])
        tables = p.jpegtables
        assert tables is not None
        return tables[:-2] + raw[2:]


def test_aligned_tiles_are_the_stored_jpeg_bytes(tidy: Path) -> None:
    handle = SlideHandle(tidy)
    geometry = handle.geometry(256, 0, False)
    top = geometry.level_count - 1
    data = render_tile(handle, geometry, top, 3, 2, fmt="jpeg")
    assert data == stored_jpeg(tidy, 0, 2 * 16 + 3)
    pixels = decode(data)
    assert pixels.shape == (256, 256, 3)
    reference = np.asarray(
        DeepZoomGenerator(openslide.OpenSlide(tidy), 256, 0).get_tile(top, (3, 2))
    ).astype(np.int16)
    assert np.abs(pixels - reference).mean() <= 1.0
    # level 1 of the slide is Deep Zoom level top - 2; page 2 in the file (1 is the thumbnail)
    assert render_tile(handle, geometry, top - 2, 1, 1, fmt="jpeg") == stored_jpeg(tidy, 2, 4 + 1)


def test_no_pass_through_with_overlap_scaling_or_png(tidy: Path) -> None:
    handle = SlideHandle(tidy)
    top = handle.geometry(256, 0, False).level_count - 1
    assert passthrough_tile(handle, handle.geometry(254, 1, False), top, 1, 1) is None
    assert passthrough_tile(handle, handle.geometry(256, 0, False), top - 1, 1, 1) is None
    png = render_tile(handle, handle.geometry(256, 0, False), top, 1, 1, fmt="png")
    assert png.startswith(b"\x89PNG")


def test_low_levels_never_read_full_resolution(synthetic: Path) -> None:
    handle = SlideHandle(synthetic)
    geometry = handle.geometry(254, 1, False)
    lowest = len(handle.level_dimensions) - 1
    assert handle.tiff is not None
    for level in range(geometry.level_count - 5):
        assert geometry.slide_levels[level] == lowest
        render_tile(handle, geometry, level, 0, 0)
    assert handle.tiff.tile_reads[0] == 0 and handle.tiff.tile_reads[lowest] > 0

    handle = SlideHandle(synthetic)
    handle.tiff = None
    for level in range(geometry.level_count - 5):
        render_tile(handle, geometry, level, 0, 0)
    assert handle.openslide_reads[0] == 0 and handle.openslide_reads[lowest] > 0


def test_rgb_jpeg_tiles_without_adobe_marker(tmp_path: Path) -> None:
    """Aperio's "RGB" JPEG tiles skip the colour transform and carry no Adobe marker:
    decoding and pass-through must not treat them as YCbCr."""
    import imagecodecs

    rng = np.random.default_rng(0)
    image = np.kron((rng.random((64, 64, 3)) * 255).astype(np.uint8), np.ones((8, 8, 1), np.uint8))

    def encoded(tile: np.ndarray) -> bytes:
        data = bytes(
            imagecodecs.jpeg8_encode(tile, level=90, colorspace="RGB", outcolorspace="RGB")
        )
        at = data.find(b"\xff\xee")  # drop the APP14 segment libjpeg adds
        return data[:at] + data[at + 2 + int.from_bytes(data[at + 2 : at + 4], "big") :]

    path = tmp_path / "rgb-jpeg.tiff"
    tiles = [encoded(image[y : y + 256, x : x + 256]) for y in (0, 256) for x in (0, 256)]
    assert all(b"\xff\xee" not in t for t in tiles)
    tifffile.imwrite(
        path,
        iter(tiles),
        shape=image.shape,
        dtype=np.uint8,
        tile=(256, 256),
        compression=7,
        photometric="rgb",
        subsampling=(1, 1),
        compressionargs={"outcolorspace": 2},
    )
    reference = np.asarray(openslide.OpenSlide(path).read_region((256, 0), 0, (256, 256)))
    handle = SlideHandle(path)
    geometry = handle.geometry(256, 0, False)
    stored = passthrough_tile(handle, geometry, geometry.level_count - 1, 1, 0)
    assert stored is not None
    for pixels in (decode(stored), handle.tiff.read_region(0, 256, 0, 256, 256)):  # type: ignore[union-attr]
        assert np.abs(pixels.astype(np.int16) - reference[..., :3]).mean() < 0.5


def test_resizing_sends_no_libvips_chatter_into_python(caplog: pytest.LogCaptureFixture) -> None:
    """libvips says something at info level on every resize; each message would be a call
    from its thread into Python and, with INFO logging on, a log line per message."""
    caplog.set_level(logging.DEBUG, logger="pyvips")
    pixels = np.random.default_rng(0).integers(0, 255, (510, 510, 3), dtype=np.uint8)
    assert resize(pixels, (255, 255)).shape == (255, 255, 3)
    chatter = [r.getMessage() for r in caplog.records if r.getMessage().startswith("VIPS:")]
    assert chatter == []
