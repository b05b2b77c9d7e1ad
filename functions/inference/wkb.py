"""Polygons as OGC Well-Known Binary (little-endian, one ring, closed), the Parquet
column's encoding, with numpy and struct only."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

_HEADER = struct.Struct("<BIII")  # byte order, type 3 (Polygon), rings, points
_POLYGON = 3


def encode_polygon(ring: np.ndarray, decimals: int = 2) -> bytes:
    """WKB of an open (k, 2) ring, closed on the way and rounded to `decimals`."""
    closed = np.round(np.vstack([ring, ring[:1]]), decimals).astype("<f8")
    return _HEADER.pack(1, _POLYGON, 1, len(closed)) + closed.tobytes()


def encode_polygons(rings: Sequence[np.ndarray], decimals: int = 2) -> list[bytes]:
    return [encode_polygon(r, decimals) for r in rings]


def decode_polygon(data: bytes) -> np.ndarray:
    """The closed (k + 1, 2) exterior ring of a little-endian WKB Polygon.

    Raises
    ------
    ValueError
        If `data` is not a little-endian WKB Polygon.
    """
    if len(data) < _HEADER.size:
        raise ValueError(f"WKB of {len(data)} bytes is too short for a polygon")
    order, kind, rings, points = _HEADER.unpack_from(data)
    if order != 1 or kind != _POLYGON or rings < 1:
        raise ValueError(f"not a little-endian WKB polygon (order {order}, type {kind})")
    return np.frombuffer(data, "<f8", count=2 * points, offset=_HEADER.size).reshape(points, 2)
