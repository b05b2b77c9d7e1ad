"""Deep Zoom geometry must equal OpenSlide's DeepZoomGenerator, tile for tile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator

from common.errors import InvalidInput, NotFound
from functions.slides.geometry import (
    DeepZoomGeometry,
    best_level_for_downsample,
    parse_tile_format,
    thumbnail_size,
)

SETTINGS = [(254, 1), (256, 0)]


class Bounded:
    """A real slide with OpenSlide bounds properties added, for limit_bounds."""

    def __init__(self, osr: Any, bounds: tuple[int, int, int, int]) -> None:
        self._osr = osr
        self.properties = dict(osr.properties)
        for name, value in zip(("x", "y", "width", "height"), bounds, strict=True):
            self.properties[f"openslide.bounds-{name}"] = str(value)
        self.dimensions = osr.dimensions
        self.level_dimensions = osr.level_dimensions
        self.level_downsamples = osr.level_downsamples

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return self._osr.get_best_level_for_downsample(downsample)


def slides(request: pytest.FixtureRequest) -> dict[str, Path]:
    real = request.getfixturevalue("real")
    return {
        "boxes": real / "boxes.tiff",
        "small": real / "small.svs",
        "synthetic": request.getfixturevalue("synthetic"),
        "tidy": request.getfixturevalue("tidy"),
    }


def assert_same(dz: DeepZoomGenerator, geometry: DeepZoomGeometry) -> None:
    assert geometry.level_count == dz.level_count
    assert geometry.level_dimensions == dz.level_dimensions
    assert geometry.level_tiles == dz.level_tiles
    assert geometry.tile_count == dz.tile_count
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        for col in range(cols):
            for row in range(rows):
                read = geometry.tile(level, col, row)
                assert dz.get_tile_coordinates(level, (col, row)) == (
                    read.location,
                    read.level,
                    read.size,
                )
                assert dz.get_tile_dimensions(level, (col, row)) == read.z_size


@pytest.mark.parametrize("name", ["boxes", "small", "synthetic", "tidy"])
@pytest.mark.parametrize(("tile_size", "overlap"), SETTINGS)
@pytest.mark.parametrize("limit_bounds", [False, True])
def test_geometry_equals_deepzoomgenerator(
    request: pytest.FixtureRequest, name: str, tile_size: int, overlap: int, limit_bounds: bool
) -> None:
    osr = openslide.OpenSlide(slides(request)[name])
    w, h = osr.dimensions
    source: Any = Bounded(osr, (w // 7, h // 5, w // 2 + 3, h // 2 + 1)) if limit_bounds else osr
    dz = DeepZoomGenerator(source, tile_size, overlap, limit_bounds=limit_bounds)
    geometry = DeepZoomGeometry.from_properties(
        osr.level_dimensions,
        osr.level_downsamples,
        source.properties,
        tile_size=tile_size,
        overlap=overlap,
        limit_bounds=limit_bounds,
    )
    assert_same(dz, geometry)


def test_boxes_has_ten_levels_and_eleven_tiles(boxes: Path) -> None:
    osr = openslide.OpenSlide(boxes)
    geometry = DeepZoomGeometry(osr.level_dimensions, osr.level_downsamples)
    assert (geometry.level_count, geometry.tile_count) == (10, 11)


def test_best_level_matches_openslide(synthetic: Path) -> None:
    osr = openslide.OpenSlide(synthetic)
    for downsample in (0.5, 1, 2, 3.99, 4.0, 4.01, 8, 16, 16.07, 17, 64, 1e6):
        assert best_level_for_downsample(osr.level_downsamples, downsample) == (
            osr.get_best_level_for_downsample(downsample)
        )


def test_out_size_is_the_size_deepzoomgenerator_returns(synthetic: Path) -> None:
    osr = openslide.OpenSlide(synthetic)
    dz = DeepZoomGenerator(osr, 254, 1)
    geometry = DeepZoomGeometry(osr.level_dimensions, osr.level_downsamples)
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        for address in {(0, 0), (cols - 1, rows - 1), (cols - 1, 0)}:
            assert dz.get_tile(level, address).size == geometry.tile(level, *address).out_size


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((100, 50), (200, 200), (100, 50)),
        ((510, 44), (255, 23), (255, 22)),
        ((37, 31), (1, 1), (1, 1)),
        ((512, 512), (256, 256), (256, 256)),
    ],
)
def test_thumbnail_size(
    size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert thumbnail_size(size, box) == expected


def test_out_of_range_addresses_are_not_found(boxes: Path) -> None:
    osr = openslide.OpenSlide(boxes)
    geometry = DeepZoomGeometry(osr.level_dimensions, osr.level_downsamples)
    for address in [(10, 0, 0), (-1, 0, 0), (9, 2, 0), (9, 0, 1), (9, -1, 0)]:
        with pytest.raises(NotFound):
            geometry.tile(*address)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one downsample per level"):
        DeepZoomGeometry([(10, 10)], [1.0, 2.0])
    with pytest.raises(ValueError, match="tile_size"):
        DeepZoomGeometry([(10, 10)], [1.0], tile_size=0)
    with pytest.raises(InvalidInput, match="jpeg or png"):
        parse_tile_format("gif")
    assert parse_tile_format("JPG") == "jpeg"
