"""Connected components of a binary image from its horizontal runs (host).

A run is a maximal horizontal stretch of set pixels. Segmented microscopy frames have
a few thousand runs against hundreds of thousands of pixels, so components found by
joining runs of adjacent rows (a graph of runs, :mod:`scipy.sparse.csgraph`) cost a
fraction of labelling every pixel, and what is written back touches only the pixels
that need it.
"""

from __future__ import annotations

import numpy as np


def component_labels(first: np.ndarray, stop: np.ndarray, row_length: int) -> np.ndarray:
    """8-connected component of every run (:func:`run_components`), numbered from 1 in
    the order of each component's first run, as a raster scan meets them."""
    component = run_components(first, stop, row_length, diagonal=True)
    if not len(component):
        return component
    _, first_run, inverse = np.unique(component, return_index=True, return_inverse=True)
    rank = np.empty(len(first_run), dtype=np.int64)
    rank[np.argsort(first_run)] = np.arange(1, len(first_run) + 1)
    return rank[inverse]  # type: ignore[no-any-return]


def run_components(
    first: np.ndarray, stop: np.ndarray, row_length: int, *, diagonal: bool
) -> np.ndarray:
    """Connected component id of every run of an image whose rows are `row_length` long.

    Parameters
    ----------
    first, stop : (n,) int64 ndarray
        Flat first and one-past-last index of each run, in raster order; runs of one
        row never touch (something unset separates them).
    diagonal : bool
        8-connected when true (runs of adjacent rows touch when ``a.start <= b.stop``
        and ``b.start <= a.stop``), else 4-connected (``<``).

    Returns
    -------
    component : (n,) int64 ndarray
        Equal for runs of one component (ids arbitrary).

    Notes
    -----
    Runs are in raster order, so the runs of the row above that touch a run are a
    range found by two binary searches; :func:`scipy.sparse.csgraph.connected_components`
    joins them.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(first)
    if not n:
        return np.zeros(0, dtype=np.int64)
    row, col0 = np.divmod(first, row_length)
    col1 = stop - row * row_length
    above_start, above_stop = ((row - 1) << 32) | col0, ((row - 1) << 32) | col1
    starts, stops = (row << 32) | col0, (row << 32) | col1
    if diagonal:  # a.stop >= b.start and a.start <= b.stop
        lo = np.searchsorted(stops, above_start, side="left")
        hi = np.searchsorted(starts, above_stop, side="right")
    else:  # a.stop > b.start and a.start < b.stop
        lo = np.searchsorted(stops, above_start, side="right")
        hi = np.searchsorted(starts, above_stop, side="left")
    count = np.maximum(hi - lo, 0)
    b = np.repeat(np.arange(n), count)
    a = lo[b] + np.arange(len(b)) - np.repeat(np.cumsum(count) - count, count)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)  # type: ignore[no-any-return]


def fill_holes_runs(mask: np.ndarray) -> np.ndarray:
    """:func:`~functions.microscopy.segmentation.fill_holes` on the host from the background's runs.

    The background is framed by a ring of background and each row closed by an unset
    column, so every background region that touches a frame's border joins the rings
    (one component: rings of consecutive frames touch) and the runs of each row stay
    apart; the runs in any other component are holes. A thresholded phase frame has a
    few thousand runs, so this is far cheaper than labelling every pixel.
    """
    t, h, w = mask.shape
    framed = np.zeros((t, h + 2, w + 3), dtype=bool)
    framed[:, :, : w + 2] = True
    np.logical_not(mask, out=framed[:, 1:-1, 1 : w + 1])
    flat = framed.reshape(-1).view(np.int8)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    first = np.concatenate(([0], edges[1::2]))  # the image starts with a run
    stop = edges[0::2]
    component = run_components(first, stop, w + 3, diagonal=False)
    hole = component != component[0]
    filled = mask.copy()
    if not hole.any():
        return filled
    first, length = first[hole], (stop - first)[hole]
    row, col = np.divmod(first, w + 3)
    frame, y = np.divmod(row, h + 2)
    start = (frame * h + y - 1) * w + col - 1  # flat index into `mask`
    offset = np.cumsum(length) - length
    filled.reshape(-1)[np.repeat(start - offset, length) + np.arange(int(length.sum()))] = True
    return filled
