"""Readers: real fixtures, OME time units, corrupt / truncated / mislabelled files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from common.errors import UnsupportedFile
from functions.microscopy.readers import open_reader, read_metadata


def test_cluster_nd2_metadata(real_dir: Path) -> None:
    m = read_metadata(real_dir / "cluster.nd2")
    assert (m.file_type, m.n_fovs, m.n_frames, m.n_z, m.n_channels) == ("nd2", 1, 3, 10, 2)
    assert (m.height, m.width, m.dtype) == (31, 38, "uint16")
    assert m.channel_names == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert m.pixel_size_um == pytest.approx(0.1678, abs=5e-5)
    assert m.z_step_um == pytest.approx(0.5)
    assert [c.emission_nm for c in m.channels] == [525.0, 700.0]
    assert [c.excitation_nm for c in m.channels] == [488.0, 561.0]
    assert m.magnification == 60.0 and m.objective
    assert m.time_units == "min" and m.time_source == "timestamps"
    assert len(m.timepoints) == 3 and m.timepoints[0] == 0.0
    assert np.all(np.diff(m.timepoints) > 0)
    payload = m.model_dump()
    for key in (
        "base_name",
        "file_type",
        "height",
        "width",
        "n_frames",
        "n_fovs",
        "n_channels",
        "timepoints",
        "channel_names",
        "dtype",
        "pixel_size_um",
        "time_units",
        "n_z",
        "channels",
    ):
        assert key in payload


def test_cluster_nd2_frames(real_dir: Path) -> None:
    with open_reader(real_dir / "cluster.nd2") as r:
        a = r.read(0, 1, 0, 3, z=4)
        assert a.shape == (3, 31, 38) and a.dtype == np.uint16 and a.any()
        with pytest.raises(ValueError, match="outside"):
            r.read(0, 2, 0, 1)


def test_rgb_tiff_channels_are_samples(real_dir: Path) -> None:
    m = read_metadata(real_dir / "boxes.tiff")
    assert (m.file_type, m.n_channels, m.height, m.width) == ("tiff", 3, 250, 300)
    assert m.time_units == "frame"
    with open_reader(real_dir / "boxes.tiff") as r:
        assert r.read(0, 2, 0, 1).shape == (1, 250, 300)


def test_unknown_compression_is_refused(real_dir: Path) -> None:
    with pytest.raises(UnsupportedFile, match="compression"):
        read_metadata(real_dir / "unopenable.tiff")


@pytest.mark.parametrize("name", ["cluster.nd2", "boxes.tiff"])
def test_truncated_files_are_refused(real_dir: Path, tmp_path: Path, name: str) -> None:
    data = (real_dir / name).read_bytes()
    bad = tmp_path / name
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedFile):
        read_metadata(bad)


def test_mislabelled_files(real_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.nd2"
    text.write_text("not a microscopy file at all")
    with pytest.raises(UnsupportedFile, match="not an ND2"):
        read_metadata(text)
    tiff_named_nd2 = tmp_path / "boxes.nd2"
    shutil.copy(real_dir / "boxes.tiff", tiff_named_nd2)
    assert read_metadata(tiff_named_nd2).file_type == "tiff"  # read as what it is
    with pytest.raises(UnsupportedFile):
        read_metadata(tmp_path / "missing.tif")


def write_ome(
    path: Path, metadata: dict, fovs: int = 1, shape: tuple = (4, 2, 16, 20)
) -> np.ndarray:
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    with tifffile.TiffWriter(path, ome=True) as tw:
        for p in range(fovs):
            tw.write(data + p, metadata={"axes": "TCYX", **metadata})
    return data


@pytest.mark.parametrize(
    ("unit", "minutes"), [("s", 0.5), ("ms", 0.0005), ("min", 30.0), ("h", 1800.0), (None, 0.5)]
)
def test_ome_time_increment_units(tmp_path: Path, unit: str | None, minutes: float) -> None:
    meta: dict[str, float | str] = {"TimeIncrement": 30.0}
    if unit:
        meta["TimeIncrementUnit"] = unit  # OME's default unit is seconds
    write_ome(tmp_path / "t.ome.tif", meta)
    m = read_metadata(tmp_path / "t.ome.tif")
    assert m.time_source == "increment" and m.time_units == "min"
    np.testing.assert_allclose(m.timepoints, np.arange(4) * minutes)


def test_ome_plane_delta_t_wins(tmp_path: Path) -> None:
    deltas = [0.0, 61.0, 119.0, 182.0]
    planes = {"DeltaT": [d for d in deltas for _ in range(2)], "DeltaTUnit": ["s"] * 8}
    write_ome(tmp_path / "p.ome.tif", {"TimeIncrement": 1.0, "Plane": planes})
    m = read_metadata(tmp_path / "p.ome.tif")
    assert m.time_source == "timestamps"
    np.testing.assert_allclose(m.timepoints, np.array(deltas) / 60)


def test_multiseries_ome_fovs_and_frames(tmp_path: Path) -> None:
    data = write_ome(
        tmp_path / "m.ome.tif",
        {"PhysicalSizeX": 325.0, "PhysicalSizeXUnit": "nm", "Channel": {"Name": ["Phase", "GFP"]}},
        fovs=3,
    )
    m = read_metadata(tmp_path / "m.ome.tif")
    assert (m.file_type, m.n_fovs, m.n_frames, m.n_channels) == ("ome-tiff", 3, 4, 2)
    assert m.channel_names == ["Phase", "GFP"] and m.pixel_size_um == pytest.approx(0.325)
    assert m.time_units == "frame"  # no time recorded: frame indices, not invented minutes
    with open_reader(tmp_path / "m.ome.tif") as r:
        np.testing.assert_array_equal(r.read(2, 1, 1, 3), data[1:3, 1] + 2)


def test_imagej_hyperstack(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 999, (5, 3, 2, 12, 10), dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "finterval": 90, "unit": "um", "spacing": 1.5},
    )
    m = read_metadata(tmp_path / "ij.tif")
    assert (m.n_frames, m.n_z, m.n_channels) == (5, 3, 2)
    assert m.pixel_size_um == pytest.approx(0.2) and m.z_step_um == pytest.approx(1.5)
    np.testing.assert_allclose(m.timepoints, np.arange(5) * 1.5)
    with open_reader(tmp_path / "ij.tif") as r:
        np.testing.assert_array_equal(r.read(0, 1, 2, 4, z=2), data[2:4, 2, 1])


def test_metadata_does_not_read_pixels(tmp_path: Path) -> None:
    """Cost must not grow with file size: corrupting every pixel byte changes nothing."""
    path = tmp_path / "big.ome.tif"
    write_ome(path, {"TimeIncrement": 2.0, "TimeIncrementUnit": "min"}, shape=(20, 2, 256, 256))
    before = read_metadata(path)
    with tifffile.TiffFile(path) as tf:
        spans = [
            (o, n) for p in tf.pages for o, n in zip(p.dataoffsets, p.databytecounts, strict=True)
        ]
    raw = bytearray(path.read_bytes())
    for offset, count in spans:
        raw[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(raw))
    after = read_metadata(path)
    assert before.model_dump(exclude={"file_path"}) == after.model_dump(exclude={"file_path"})


def write_czi(path: Path, scenes: int = 2, frames: int = 3) -> None:
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as w:
        for s in range(scenes):
            for t in range(frames):
                for c in range(2):
                    w.write(
                        data=np.full((20, 30), 100 * s + 10 * t + c, np.uint16),
                        plane={"T": t, "C": c, "Z": 0},
                        scene=s,
                        location=(1000 * s, 0),
                    )
        w.write_metadata(
            document_name="x",
            channel_names={0: "Phase", 1: "GFP"},
            scale_x=0.65e-6,
            scale_y=0.65e-6,
        )


def test_czi_scenes_are_fovs(tmp_path: Path) -> None:
    write_czi(tmp_path / "s.czi")
    m = read_metadata(tmp_path / "s.czi")
    assert (m.file_type, m.n_fovs, m.n_frames, m.n_channels, m.n_z) == ("czi", 2, 3, 2, 1)
    assert (m.height, m.width, m.dtype) == (20, 30, "uint16")
    assert m.channel_names == ["Phase", "GFP"]
    assert m.pixel_size_um == pytest.approx(0.65)
    assert m.time_units == "frame"  # no stated time unit: frame indices
    with open_reader(tmp_path / "s.czi") as r:
        a = r.read(1, 1, 1, 3)
    assert a.shape == (2, 20, 30) and a[:, 0, 0].tolist() == [111, 121]


def test_truncated_czi_is_refused(tmp_path: Path) -> None:
    write_czi(tmp_path / "s.czi")
    data = (tmp_path / "s.czi").read_bytes()
    (tmp_path / "cut.czi").write_bytes(data[: len(data) // 3])
    with pytest.raises(UnsupportedFile):
        read_metadata(tmp_path / "cut.czi")
