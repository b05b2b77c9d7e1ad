"""Predictions from an external service read into Objects: geometries, classes,
confidence and measurements in the shapes services send, and what is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from common.errors import InvalidInput
from functions.inference.geojson_in import POINT_RADIUS, keep_inside, read_features


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}


def test_polygons_points_and_multipolygons_become_objects() -> None:
    big = [[20, 20], [40, 20], [40, 40], [20, 40], [20, 20]]
    small = [[0, 0], [2, 0], [2, 2], [0, 0]]
    objects, classes, measured = read_features(
        collection(
            feature(SQUARE, classification={"name": "tumor"}, confidence=0.8),
            feature({"type": "Point", "coordinates": [50, 60]}, label="cell", score=0.4),
            feature(
                {"type": "MultiPolygon", "coordinates": [[small], [big]]},
                measurements=[{"name": "darkness", "value": 3.5}, {"name": "x", "value": "no"}],
            ),
        ),
        classes=["tumor", "stroma"],
        mpp=0.5,
    )
    assert classes == ["tumor", "stroma", "cell"]
    assert objects.label.tolist() == [0, 2, 0]  # unlabelled: the first declared class
    np.testing.assert_allclose(objects.centroid, [[5, 5], [50, 60], [30, 30]], atol=1e-9)
    np.testing.assert_allclose(objects.confidence, [0.8, 0.4, 1.0])
    assert objects.area_um2[0] == pytest.approx(100 * 0.25)
    assert objects.area_um2[1] == pytest.approx(np.pi * POINT_RADIUS**2 * 0.25, rel=0.05)
    assert measured == ["darkness"]
    assert np.isnan(objects.measurements["darkness"][0])
    assert objects.measurements["darkness"][2] == 3.5
    assert objects.measurements["centroid_x"].tolist() == pytest.approx([5, 50, 30])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"type": "Feature"}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": {}}, "must be a list"),
        (collection({"type": "Point"}), "feature 0: not a GeoJSON Feature"),
        (collection(feature({"type": "LineString", "coordinates": []})), "LineString"),
        (collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]})), "3 distinct"),
        (collection(feature({"type": "Polygon", "coordinates": "x"})), "malformed"),
        (collection(feature(SQUARE), feature(SQUARE, confidence=1.5)), "feature 1: confidence"),
    ],
)
def test_unreadable_predictions_are_refused_by_feature(data: Any, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        read_features(data, classes=["a"], mpp=0.5)


def test_the_threshold_and_region_keep_objects_by_centroid() -> None:
    shifted = {"type": "Polygon", "coordinates": [[[100, 100], [110, 100], [110, 110]]]}
    objects, _, _ = read_features(
        collection(
            feature(SQUARE, confidence=0.9),
            feature(shifted, confidence=0.9),
            feature(SQUARE, confidence=0.3),
        ),
        classes=["a"],
        mpp=1.0,
    )
    assert len(keep_inside(objects, confidence_threshold=0.5, region=None)) == 2
    region = [(0.0, 0.0), (50.0, 0.0), (50.0, 50.0), (0.0, 50.0)]
    kept = keep_inside(objects, confidence_threshold=0.5, region=region)
    assert len(kept) == 1 and kept.centroid[0].tolist() == pytest.approx([5, 5])
