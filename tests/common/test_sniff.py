"""What an upload is told when its bytes are refused: short messages a person can act
on, without tifffile's internals."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from common.errors import UnsupportedFile
from common.sniff import identify
from functions.microscopy.synthetic import write_timelapse
from tests.support.fixtures import REAL


@pytest.fixture(scope="module")
def ome(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("ome")
    return write_timelapse(folder, fovs=2, frames=5, size=64, seed=1).image.read_bytes()


def _refusal(name: str, data: bytes) -> str:
    with pytest.raises(UnsupportedFile) as refused:
        identify(name, io.BytesIO(data), len(data))
    return refused.value.message


@pytest.mark.parametrize("name", ["empty.tif", "empty.ome.tiff", "empty.svs", "empty.nd2"])
def test_an_empty_image_is_an_empty_file(name: str) -> None:
    assert _refusal(name, b"") == f"{name!r} is an empty file (0 bytes)"


@pytest.mark.parametrize("fraction", [0.03, 0.2, 0.5])
def test_a_truncated_ome_tiff_says_so_without_tifffile_internals(
    ome: bytes, fraction: float
) -> None:
    message = _refusal("cut.ome.tif", ome[: int(len(ome) * fraction)])
    assert message.startswith("'cut.ome.tif': truncated or corrupt TIFF: "), message
    reason = message.split("TIFF: ", 1)[1]
    assert reason and len(reason) < 80, message
    assert not re.search(r"tifffile|TiffFileError|TiffTag|<|>|raised", message), message


def test_a_microscopy_tiff_that_cannot_be_decoded_is_refused() -> None:
    data = (REAL / "unopenable.tiff").read_bytes()
    message = _refusal("unopenable.tiff", data)
    assert message == "'unopenable.tiff' uses TIFF compression 52479, which cannot be decoded"


def test_good_files_pass(ome: bytes) -> None:
    assert identify("ok.ome.tif", io.BytesIO(ome), len(ome)) == "microscopy"
    assert identify("empty.csv", io.BytesIO(b""), 0) == "table"  # text may be empty
    data = Path(REAL / "small.svs").read_bytes()
    assert identify("small.svs", io.BytesIO(data), len(data)) == "slide"
