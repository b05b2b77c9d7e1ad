"""The kernels under nuclei-he: the colour table equals the per-pixel chain, disks and
morphology equal scipy's, star outlines and their hulls and areas, the tile grid's
cores partition the plane, the best pyramid level, WKB round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from common.arrays import get_backend
from functions.inference.morphology import dilate, disk_offsets, erode, fill_holes, within
from functions.inference.outlines import convex_areas, polygon_areas, simplify, star_outlines
from functions.inference.stains import (
    REFERENCE_MU_LAB,
    StainTable,
    lab_to_rgb,
    normalize_deconvolve,
    reinhard_stats,
    rgb_to_lab,
    stain_matrix,
)
from functions.inference.tiling import TileGrid, best_level, plan_regions
from functions.inference.wkb import decode_polygon, encode_polygon

CPU = get_backend("cpu")
STATS = ((9.0, -0.17, 0.027), (0.30, 0.07, 0.0105))


def test_stain_matrix_is_unit_columns_with_their_cross_product() -> None:
    w = stain_matrix()
    assert np.allclose(np.linalg.norm(w, axis=0), 1)
    assert np.allclose(w[:, 0], np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29]))
    assert abs(w[:, 2] @ w[:, 0]) < 1e-12 and abs(w[:, 2] @ w[:, 1]) < 1e-12


def test_lab_round_trips() -> None:
    rgb = np.random.default_rng(0).integers(1, 256, (500, 3))
    assert np.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6)


def test_the_colour_table_equals_the_per_pixel_chain() -> None:
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    table = StainTable(*STATS)
    hema, eosin = table(tile)
    direct = normalize_deconvolve(tile, *STATS)
    assert np.array_equal(hema, direct[..., 0]) and np.array_equal(eosin, direct[..., 1])
    again, _ = table(tile[::-1])  # second look: all from the table
    assert np.array_equal(again, direct[::-1, :, 0])


def test_hematoxylin_and_eosin_separate() -> None:
    h = np.asarray([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
    e = np.asarray([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
    purple = np.round(255 * np.exp(-1.2 * h)).astype(np.uint8)
    pink = np.round(255 * np.exp(-0.6 * e)).astype(np.uint8)
    pixels = np.stack([purple, pink] * 50)
    mu, sigma = reinhard_stats(pixels)
    stains = normalize_deconvolve(np.stack([purple, pink]), mu, sigma)
    assert stains[0, 0] < stains[1, 0]  # purple: more hematoxylin (darker channel 0)
    assert stains[1, 1] < stains[0, 1]  # pink: more eosin
    with pytest.raises(ValueError, match="pixels must be"):
        reinhard_stats(np.zeros((1, 3)))
    assert REFERENCE_MU_LAB[0] == pytest.approx(8.63234435)


@pytest.mark.parametrize("radius", [1, 3, 6.73])
def test_morphology_equals_scipy(radius: float) -> None:
    mask = ndimage.gaussian_filter(np.random.default_rng(2).random((120, 97)), 2) > 0.5
    foot = disk_offsets(radius)
    assert np.array_equal(dilate(CPU, mask, radius), ndimage.binary_dilation(mask, foot))
    assert np.array_equal(
        erode(CPU, mask, radius), ndimage.binary_erosion(mask, foot, border_value=1)
    )
    assert np.array_equal(fill_holes(CPU, mask), ndimage.binary_fill_holes(mask))
    edt = ndimage.distance_transform_edt(mask)
    for d, near in zip([radius, math.inf], within(CPU, mask, [radius, math.inf]), strict=True):
        assert np.array_equal(near, edt < d)


def test_star_outlines_follow_the_objects() -> None:
    from skimage.draw import disk, ellipse

    labels = np.zeros((120, 120), np.int32)
    labels[disk((40, 40), 15)] = 1
    labels[ellipse(80, 80, 10, 20, rotation=0.5)] = 2
    labels[35:45, 50:56] = 0  # a dent in object 1
    ids = np.array([1, 2])
    centroids = np.array(
        [
            [np.mean(np.nonzero(labels == i)[1]) + 0.5, np.mean(np.nonzero(labels == i)[0]) + 0.5]
            for i in ids
        ]
    )
    bboxes = np.array([[20, 20, 60, 60], [55, 60, 105, 100]], float)
    rings = star_outlines(labels, ids, centroids, bboxes)
    pixels = np.array([(labels == i).sum() for i in ids])
    assert np.allclose(polygon_areas(rings), pixels, rtol=0.05)
    from scipy.spatial import ConvexHull

    assert np.allclose(convex_areas(rings), [ConvexHull(r).volume for r in rings])
    assert convex_areas(rings)[0] > polygon_areas(rings)[0] * 1.02  # the dent
    simple = simplify(rings, 0.5)
    assert all(3 <= len(s) < 32 for s in simple)
    assert np.allclose([polygon_areas(s[None])[0] for s in simple], polygon_areas(rings), rtol=0.05)


def test_tile_cores_partition_the_slide() -> None:
    grid = TileGrid(3000, 2000, scale=2.0, tile=512, overlap=64)
    assert grid.model_size == (1500, 1000) and grid.stride == 448
    cols, rows = grid.shape
    assert (cols - 1) * 448 + 512 >= 1500 and (rows - 1) * 448 + 512 >= 1000
    points = np.random.default_rng(3).uniform(-50, 1600, (2000, 2))
    owners = np.zeros(len(points), int)
    for c in range(cols):
        for r in range(rows):
            x0, y0, x1, y1 = grid.core(c, r)
            inside = (
                (points[:, 0] >= x0)
                & (points[:, 0] < x1)
                & (points[:, 1] >= y0)
                & (points[:, 1] < y1)
            )
            owners += inside
            tx, ty = grid.origin(c, r)
            finite = np.isfinite([x0, y0, x1, y1])
            assert (np.array([x0 - tx, y0 - ty, tx + 512 - x1, ty + 512 - y1])[finite] >= 32).all()
    assert (owners == 1).all()
    assert grid.level0_box(1, 1) == (896.0, 896.0, 1920.0, 1920.0)
    with pytest.raises(ValueError, match="overlap"):
        TileGrid(100, 100, scale=1, tile=64, overlap=64)


def test_the_best_level_is_the_coarsest_not_finer_than_the_model() -> None:
    downsamples = (1.0, 4.0, 16.0, 64.0)
    assert best_level(downsamples, 1.0) == 0
    assert best_level(downsamples, 4.0) == 1  # a 2 µm/px model on a 0.5 µm/px slide
    assert best_level(downsamples, 8.0) == 1
    assert best_level(downsamples, 100.0) == 3
    assert best_level(downsamples, 0.5) == 0


def test_regions_are_blocks_of_tiles() -> None:
    tiles = [(c, r) for c in range(7) for r in range(5) if (c + r) % 3]
    regions = plan_regions(tiles, 4)
    assert sorted(t for region in regions for t in region) == sorted(tiles)
    for region in regions:
        assert len({(c // 2, r // 2) for c, r in region}) == 1
    assert plan_regions(tiles, 10_000) == [sorted(tiles, key=lambda t: (t[1], t[0]))]


def test_wkb_round_trips_and_refuses_other_geometry() -> None:
    ring = np.array([[1.234, 5.0], [10.0, 5.5], [7.25, 12.125]])
    data = encode_polygon(ring)
    assert data[:5] == b"\x01\x03\x00\x00\x00"
    back = decode_polygon(data)
    assert np.allclose(back[:-1], np.round(ring, 2)) and np.array_equal(back[0], back[-1])
    with pytest.raises(ValueError, match="not a little-endian WKB polygon"):
        decode_polygon(b"\x01\x01\x00\x00\x00" + bytes(16))
