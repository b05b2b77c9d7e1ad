"""The facade the web layer calls: descriptors, tiles with ETags, thumbnails, errors."""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from common.errors import InvalidInput, NotFound, UnsupportedFile
from functions.slides.service import CACHE_CONTROL, SlideTiles, TileSettings


def test_descriptor_xml_and_json(boxes: Path) -> None:
    tiles = SlideTiles()
    descriptor = tiles.descriptor("b", boxes)
    reference = ET.fromstring(DeepZoomGenerator(openslide.OpenSlide(boxes)).get_dzi("jpeg"))
    ours = ET.fromstring(descriptor.to_xml())
    assert ours.attrib == reference.attrib
    assert ours[0].attrib == reference[0].attrib == {"Width": "300", "Height": "250"}
    image = descriptor.to_json("/api/v1/viewer/b_files/")["Image"]
    assert image["TileSize"] == "254" and image["Overlap"] == "1" and image["Format"] == "jpeg"
    assert image["Url"] == "/api/v1/viewer/b_files/" and image["Size"]["Width"] == "300"
    assert descriptor.level_count == 10


def test_tiles_are_cached_and_tagged(synthetic: Path) -> None:
    tiles = SlideTiles(TileSettings(tile_size=256, overlap=0))
    top = tiles.descriptor("s", synthetic).level_count - 1
    first = tiles.tile("s", synthetic, top, 1, 1, "jpeg")
    assert first.media_type == "image/jpeg" and first.cache_control == CACHE_CONTROL
    assert tiles.tile("s", synthetic, top, 1, 1, "jpeg") is first
    assert tiles.cache.hits == 1
    png = tiles.tile("s", synthetic, top, 1, 1, "png")
    assert png.media_type == "image/png" and png.etag != first.etag
    assert Image.open(io.BytesIO(png.content)).size == (256, 256)
    other = SlideTiles(TileSettings(tile_size=256, overlap=0))
    assert other.tile("s", synthetic, top, 1, 1, "jpeg").etag == first.etag
    tiles.evict("s")
    assert tiles.tile("s", synthetic, top, 1, 1, "jpeg") is not first


def test_errors(synthetic: Path) -> None:
    tiles = SlideTiles()
    levels = tiles.descriptor("s", synthetic).level_count
    with pytest.raises(NotFound, match="level"):
        tiles.tile("s", synthetic, levels, 0, 0, "jpeg")
    with pytest.raises(NotFound, match="out of range"):
        tiles.tile("s", synthetic, levels - 1, 99, 0, "jpeg")
    with pytest.raises(InvalidInput, match="jpeg or png"):
        tiles.tile("s", synthetic, 0, 0, 0, "webp")
    with pytest.raises(NotFound, match="no associated image"):
        tiles.associated_image("s", synthetic, "nope")
    with pytest.raises(InvalidInput):
        tiles.thumbnail("s", synthetic, 0)


def test_unreadable_pixels_are_a_clear_error_not_a_crash(real: Path) -> None:
    tiles = SlideTiles()
    with pytest.raises(UnsupportedFile, match=r"unreadable\.svs.*cannot be (read|decoded)"):
        tiles.thumbnail("u", real / "unreadable.svs", 512)
    with pytest.raises(UnsupportedFile, match=r"unreadable\.svs"):
        tiles.tile("u", real / "unreadable.svs", 0, 0, 0, "jpeg")
    with pytest.raises(UnsupportedFile, match=r"unopenable\.tiff cannot be opened"):
        tiles.descriptor("x", real / "unopenable.tiff")


def test_thumbnail_and_associated_images(synthetic: Path) -> None:
    tiles = SlideTiles()
    thumb = Image.open(io.BytesIO(tiles.thumbnail("s", synthetic, 512).content))
    assert max(thumb.size) == 512 and thumb.size[1] == round(1103 * 512 / 1501)
    label = tiles.associated_image("s", synthetic, "label")
    assert label.media_type == "image/png"
    assert Image.open(io.BytesIO(label.content)).size == (200, 200)


def test_concurrent_and_async_reads(synthetic: Path, boxes: Path) -> None:
    tiles = SlideTiles(TileSettings(cache_bytes=0))
    top = tiles.descriptor("s", synthetic).level_count - 1
    jobs = [("s", synthetic, top, c, r) for c in range(5) for r in range(4)]
    jobs += [("b", boxes, 9, 0, 0)] * 4
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda j: tiles.tile(*j, "jpeg"), jobs))
    serial = [tiles.tile(*j, "jpeg") for j in jobs]
    assert [r.content for r in results] == [r.content for r in serial]

    async def fetch() -> bytes:
        return (await tiles.atile("s", synthetic, top, 0, 0, "jpeg")).content

    assert asyncio.run(fetch()) == serial[0].content
