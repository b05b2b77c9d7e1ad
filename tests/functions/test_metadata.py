"""The metadata capability's dispatch on content, on the directory store (files read in
place) and on a real S3 server (byte ranges; CZI and slides through a temporary copy)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from common.capabilities import StoredFile
from common.errors import UnsupportedFile
from functions.metadata import describe_path, describe_stored
from functions.microscopy.synthetic import write_timelapse
from tests.functions.microscopy.test_readers import write_czi
from tests.support.fixtures import REAL


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not REAL.is_dir():
        pytest.skip(f"real fixtures not found at {REAL}")
    out = tmp_path_factory.mktemp("samples")
    write_czi(out / "scenes.czi")
    return {
        "cluster.nd2": REAL / "cluster.nd2",
        "small.svs": REAL / "small.svs",
        "boxes.tiff": REAL / "boxes.tiff",
        "scenes.czi": out / "scenes.czi",
        "timelapse.ome.tif": write_timelapse(out, fovs=2, frames=4, size=64).image,
    }


EXPECTED = {
    "cluster.nd2": ("microscopy", "nd2"),
    "timelapse.ome.tif": ("microscopy", "ome-tiff"),
    "scenes.czi": ("microscopy", "czi"),
    "small.svs": ("slide", "aperio"),
    "boxes.tiff": ("slide", "generic-tiff"),
}


def _kind(result: dict[str, object]) -> object:
    return result.get("file_type", result.get("vendor"))


def _put(store: object, path: Path, name: str | None = None) -> StoredFile:
    name = name or path.name
    key = f"users/u/files/{uuid.uuid4()}/{name}"
    store.put_file(key, path)  # type: ignore[attr-defined]
    return StoredFile(id=uuid.uuid4(), owner_id=None, name=name, key=key, size=path.stat().st_size)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_content_decides_the_reader(samples: dict[str, Path], name: str) -> None:
    result = describe_path(samples[name])
    assert (result.kind, _kind(result.metadata)) == EXPECTED[name]


def test_directory_store_files_are_read_in_place(
    dir_store: object, samples: dict[str, Path]
) -> None:
    stored = _put(dir_store, samples["cluster.nd2"])
    assert dir_store.local_path(stored.key).is_file()  # type: ignore[attr-defined]
    result = describe_stored(dir_store, stored)
    assert result.metadata["n_z"] == 10 and result.metadata["file_path"] is None


def test_s3_objects_give_the_same_metadata(s3_store: object, samples: dict[str, Path]) -> None:
    assert s3_store.local_path("users/x") is None  # type: ignore[attr-defined]
    for name, path in samples.items():
        # stored under a misleading name: the content still decides
        stored = _put(s3_store, path, name=f"renamed-{name}.bin")
        remote = describe_stored(s3_store, stored)
        local = describe_path(path, name=stored.name)
        assert remote == local and (remote.kind, _kind(remote.metadata)) == EXPECTED[name]


def test_unknown_content_is_unsupported(s3_store: object, tmp_path: Path) -> None:
    path = tmp_path / "notes.nd2"
    path.write_text("time,value\n0,1\n")
    with pytest.raises(UnsupportedFile, match=r"notes\.nd2"):
        describe_stored(s3_store, _put(s3_store, path))
