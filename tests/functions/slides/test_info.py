"""Slide metadata, and clear errors for files that are not readable slides."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import UnsupportedFile
from functions.slides.info import SlideInfo, read_slide_info


def test_small_svs(real: Path) -> None:
    info = read_slide_info(real / "small.svs")
    assert isinstance(info, SlideInfo)
    assert (info.vendor, info.width, info.height, info.level_count) == ("aperio", 16, 16, 1)
    assert (info.tile_width, info.tile_height) == (64, 64)
    assert info.mpp_x == pytest.approx(0.499) and info.objective_power == 20
    assert [a.name for a in info.associated_images] == ["thumbnail"]
    assert info.properties["aperio.AppMag"] == "20"
    assert info.quickhash


def test_generic_tiff(boxes: Path) -> None:
    info = read_slide_info(boxes)
    assert info.vendor == "generic-tiff"
    assert info.level_dimensions == [(300, 250), (150, 125), (75, 62), (37, 31)]
    assert info.level_downsamples[1] == 2.0
    assert info.associated_images == [] and info.bounds is None


def test_synthetic_slide_reads_as_aperio_with_associated_images(synthetic: Path) -> None:
    info = read_slide_info(synthetic)
    assert info.vendor == "aperio" and info.level_count == 3
    assert (info.width, info.height) == (1501, 1103)
    assert info.mpp_x == 0.25 and info.objective_power == 40
    assert sorted(a.name for a in info.associated_images) == ["label", "macro", "thumbnail"]
    assert info.model_dump_json()  # JSON-serialisable for the record


def test_unreadable_pixels_fail_with_a_clear_error(real: Path) -> None:
    with pytest.raises(
        UnsupportedFile,
        match=r"unreadable\.svs opens as a slide but its "
        r"pixel data cannot be read",
    ):
        read_slide_info(real / "unreadable.svs")


def test_unopenable_tiff_fails_with_a_clear_error(real: Path) -> None:
    with pytest.raises(
        UnsupportedFile,
        match=r"unopenable\.tiff cannot be opened as a slide: "
        r"Unsupported TIFF compression",
    ):
        read_slide_info(real / "unopenable.tiff")


def test_not_a_slide(real: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile, match=r"cluster\.nd2 is not a whole-slide image"):
        read_slide_info(real / "cluster.nd2")
    text = tmp_path / "notes.svs"
    text.write_text("hello")
    with pytest.raises(UnsupportedFile, match="not a whole-slide image"):
        read_slide_info(text)
    with pytest.raises(UnsupportedFile, match="does not exist"):
        read_slide_info(tmp_path / "missing.svs")
