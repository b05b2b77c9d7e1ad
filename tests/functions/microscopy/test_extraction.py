"""Label-statistics features against scikit-image's regionprops (the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from functions.microscopy.extraction import (
    Foreground,
    foreground_intensity_features,
    intensity_features,
    list_features,
    shape_features,
)


def blobs(seed: int, shape: tuple[int, int, int] = (3, 90, 110)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = ndimage.uniform_filter(rng.random(shape), size=(1, 13, 13)) > 0.52
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    return ndimage.label(mask, structure=structure)[0]


@pytest.mark.parametrize("from_mask", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_shape_features_match_regionprops(seed: int, from_mask: bool) -> None:
    labels = blobs(seed)
    # from_mask: the labels' own components (never touching), whose perimeters are
    # found from the mask alone
    fg = Foreground.from_mask(labels > 0) if from_mask else Foreground.from_labels(labels)
    got = shape_features(fg)
    n = 0
    for t in range(labels.shape[0]):
        for p in regionprops(labels[t]):
            n += 1
            k = p.label
            assert got["frame"][k] == t
            assert got["area"][k] == p.area
            assert got["position_y"][k] == pytest.approx(p.centroid[0], abs=1e-9)
            assert got["position_x"][k] == pytest.approx(p.centroid[1], abs=1e-9)
            assert (
                got["bbox_y0"][k],
                got["bbox_x0"][k],
                got["bbox_y1"][k],
                got["bbox_x1"][k],
            ) == p.bbox
            assert got["perimeter"][k] == pytest.approx(p.perimeter, abs=1e-9)
            assert got["eccentricity"][k] == pytest.approx(p.eccentricity, abs=1e-9)
            if p.axis_minor_length > 0:
                assert got["aspect_ratio"][k] == pytest.approx(
                    p.axis_major_length / p.axis_minor_length, rel=1e-9
                )
            assert got["solidity"][k] == pytest.approx(p.solidity, rel=1e-9)
    assert n > 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_intensity_features_match_numpy(dtype: type) -> None:
    labels = blobs(2)
    rng = np.random.default_rng(3)
    values: np.ndarray = rng.normal(5, 10, labels.shape).astype(
        dtype
    )  # negatives after subtraction
    got = intensity_features(Foreground.from_labels(labels), values)
    for k in range(1, labels.max() + 1):
        v = values[labels == k].astype(np.float64)
        assert got["intensity_total"][k] == pytest.approx(v.sum(), rel=1e-6, abs=1e-3)
        assert got["intensity_mean"][k] == pytest.approx(v.mean(), rel=1e-6, abs=1e-5)
        assert got["intensity_std"][k] == pytest.approx(v.std(), rel=1e-5, abs=1e-5)
        assert got["intensity_max"][k] == pytest.approx(v.max(), rel=1e-6)
        assert got["intensity_median"][k] == pytest.approx(np.median(v), rel=1e-6, abs=1e-6)


def test_erosion_shrinks_the_summed_mask() -> None:
    labels = np.zeros((1, 20, 20), np.int32)
    labels[0, 2:9, 2:9] = 1
    ones = np.ones(labels.shape, np.float32)
    fg = Foreground.from_labels(labels)
    assert intensity_features(fg, ones)["intensity_total"][1] == 49
    assert intensity_features(fg, ones, erosion=1)["intensity_total"][1] == 25


def test_features_from_foreground_values_equal_those_from_frames() -> None:
    """The workflow corrects only the foreground pixels: the same numbers, bit for bit,
    as from whole corrected frames, eroded totals included."""
    labels = blobs(2)
    values = np.random.default_rng(4).normal(5, 10, labels.shape).astype(np.float32)
    fg = Foreground.from_labels(labels)
    for erosion in (0, 1):
        whole = intensity_features(fg, values, erosion=erosion)
        at = foreground_intensity_features(fg, values[labels > 0], erosion=erosion)
        for name, column in whole.items():
            np.testing.assert_array_equal(at[name], column, err_msg=name)


def test_shapes_are_validated() -> None:
    fg = Foreground.from_labels(np.ones((1, 4, 4), np.int32))
    with pytest.raises(ValueError, match="match"):
        intensity_features(fg, np.ones((1, 4, 5)))
    with pytest.raises(ValueError, match="foreground pixels"):
        foreground_intensity_features(fg, np.ones(15, np.float32))
    with pytest.raises(ValueError, match="shape"):
        Foreground.from_labels(np.ones((4, 4), np.int32))


def test_feature_list_has_units() -> None:
    names = {f["name"]: f for f in list_features()}
    for n in (
        "area",
        "perimeter",
        "aspect_ratio",
        "circularity",
        "eccentricity",
        "solidity",
        "intensity_total",
        "intensity_mean",
        "intensity_max",
        "intensity_std",
        "intensity_median",
    ):
        assert names[n]["unit"] and names[n]["description"]


def test_frames_without_cells() -> None:
    fg = Foreground.from_labels(np.zeros((2, 8, 9), np.int32))
    assert shape_features(fg)["area"].tolist() == [0.0]
    assert intensity_features(fg, np.ones((2, 8, 9)))["intensity_total"].tolist() == [0.0]
