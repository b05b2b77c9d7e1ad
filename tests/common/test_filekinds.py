"""One rule for what a file is: upload sniffing, the metadata capability and the
microscopy readers classify every TIFF flavour alike (slide or microscopy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from common.errors import UnsupportedFile
from common.sniff import identify
from functions.metadata import describe_path
from functions.microscopy.readers import WholeSlideImage, read_metadata
from tests.support.fixtures import REAL


def write_pyramidal_ome(path: Path) -> Path:
    """A tiled OME-TIFF time-lapse (T=2, C=2) with one reduced level in SubIFDs."""
    data = np.arange(2 * 2 * 64 * 64, dtype=np.uint16).reshape(2, 2, 64, 64)
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(data, subifds=1, tile=(16, 16), metadata={"axes": "TCYX"})
        writer.write(data[..., ::2, ::2], subfiletype=1, tile=(16, 16))
    return path


def write_imagej_hyperstack(path: Path) -> Path:
    data = np.zeros((3, 2, 2, 32, 32), dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return path


def write_plain_stack(path: Path) -> Path:
    tifffile.imwrite(path, np.zeros((5, 32, 32), dtype=np.uint8), metadata=None)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("kinds")
    return {
        "pyramidal OME-TIFF": write_pyramidal_ome(out / "pyramid.tif"),
        "ImageJ hyperstack": write_imagej_hyperstack(out / "hyperstack.tif"),
        "plain multi-page TIFF": write_plain_stack(out / "stack.tif"),
        "generic pyramidal TIFF": shutil.copy(REAL / "boxes.tiff", out / "boxes.tiff"),
        "SVS": shutil.copy(REAL / "small.svs", out / "small.svs"),
    }


EXPECTED = {
    "pyramidal OME-TIFF": "microscopy",
    "ImageJ hyperstack": "microscopy",
    "plain multi-page TIFF": "microscopy",
    "generic pyramidal TIFF": "slide",
    "SVS": "slide",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_uploads_and_the_metadata_capability_agree(files: dict[str, Path], case: str) -> None:
    path = Path(files[case])
    with open(path, "rb") as fh:
        sniffed = identify(path.name, fh, path.stat().st_size)
    described = describe_path(path)
    assert sniffed == described.kind == EXPECTED[case]
    try:
        read_metadata(path, microscopy_only=True)
        read = "microscopy"
    except WholeSlideImage:
        read = "slide"
    assert read == EXPECTED[case]


def test_a_pyramidal_ome_tiff_is_read_as_a_time_lapse(files: dict[str, Path]) -> None:
    meta = describe_path(Path(files["pyramidal OME-TIFF"])).metadata
    assert (meta["file_type"], meta["n_frames"], meta["n_channels"]) == ("ome-tiff", 2, 2)
    assert (meta["height"], meta["width"]) == (64, 64)


def test_a_name_that_promises_another_kind_is_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    stack = tmp_path / "stack.svs"  # a microscopy stack named like a slide
    shutil.copy(files["plain multi-page TIFF"], stack)
    with open(stack, "rb") as fh, pytest.raises(UnsupportedFile, match="named like a slide"):
        identify(stack.name, fh, stack.stat().st_size)
