"""Phase-contrast segmentation by log local standard deviation (PyAMA's log-std method).

Per frame: local variance over a ``size x size`` window (E[x²] - E[x]²), log std
``½·ln(var)`` where ``var > 0`` else 0, threshold ``mode + n_std · std(values ≤ mode)``
of a ``bins``-bin histogram, then fill holes, binary opening and binary closing with a
``structure_size`` square repeated ``iterations`` times. Every step works on a whole
``(T, Y, X)`` batch; only the histogram is taken per frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.arrays import Backend, get_backend
from functions.microscopy import bitmorph
from functions.microscopy.components import fill_holes_runs
from functions.microscopy.histogram import uniform_histogram

#: In-plane structuring elements for 3-D ``(T, Y, X)`` batches: frames never connect.
_CROSS = np.zeros((3, 3, 3), dtype=bool)
_CROSS[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
_SQUARE = np.zeros((3, 3, 3), dtype=bool)
_SQUARE[1] = True


def _as_stack(frames: Any, name: str = "frames") -> Any:
    if frames.ndim == 2:
        return frames[None]
    if frames.ndim != 3:
        raise ValueError(f"{name} must be (Y, X) or (T, Y, X), got shape {frames.shape}")
    return frames


def local_logstd(frames: Any, *, size: int = 3, backend: Backend | None = None) -> Any:
    """Log of the local standard deviation of each frame.

    Parameters
    ----------
    frames : (T, Y, X) or (Y, X) ndarray
        Phase-contrast frames, any real dtype.
    size : int, optional
        Side of the square window.
    backend : Backend, optional
        Array backend (CPU by default).

    Returns
    -------
    logstd : (T, Y, X) float32 ndarray
        ``½·ln(var)`` where the local variance is positive, else 0.

    Examples
    --------
    >>> import numpy as np
    >>> local_logstd(np.zeros((1, 4, 4))).max()
    np.float32(0.0)
    """
    be = backend or get_backend("cpu")
    x = _as_stack(be.asarray(frames))
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if be.name != "cpu":
        return _logstd_batch(x, size, be.xp)
    # frame by frame: a frame's temporaries stay in the core's cache, a batch's do not
    out = np.empty(x.shape, dtype=np.float32)
    for frame, target in zip(x, out, strict=True):
        _logstd_frame(frame, size, target)
    return out


def _centred_sums(x: Any, size: int, xp: Any) -> Any:
    """``k²·var`` (k = size²) of every window of a (T, Y, X) stack, float32: box sums of
    the values centred per frame (one pass, no copy first; keeps the variance accurate
    in float32 for 16-bit data) and of their squares, as ``k·S2 - S1²``: no division."""
    # any value near the frame's mean centres it as well: every 8th row's mean, at an
    # eighth of the cost of the frame's (a float64 reduction)
    rows = x[:, :: max(1, min(8, x.shape[1] // 8))]
    centre = rows.mean(axis=(1, 2), dtype=xp.float64, keepdims=True).astype(xp.float32)
    x = xp.subtract(x, centre, dtype=xp.float32)
    s1 = _box_sum(x, size, xp)
    x *= x
    s2 = _box_sum(x, size, xp)
    del x
    s1 *= s1
    s2 *= xp.float32(size * size)
    s2 -= s1
    return s2


def _logstd_frame(frame: np.ndarray, size: int, out: np.ndarray) -> None:
    """:func:`local_logstd` of one 2-D frame into `out` (host)."""
    s2 = _centred_sums(frame[None], size, np)[0]
    # ½·ln(var) = ½·(ln(k²·var) - 2 ln k), only where positive (no masked scatter)
    positive = s2 > 0
    out[...] = 0
    np.log(s2, out=out, where=positive)
    np.subtract(out, np.float32(2 * np.log(np.float32(size * size))), out=out, where=positive)
    out *= np.float32(0.5)


def _foreground_frame(frame: np.ndarray, size: int, bins: int, n_std: float, out: Any) -> None:
    """``local_logstd(frame) > logstd_threshold(...)`` of one frame (host), in the domain
    of ``L = ln(k²·var)`` = ``2·logstd + 2 ln k``: an affine image of the log std, so its
    histogram has the same bins, its mode and spread map affinely, and the threshold
    maps with them; the two full-frame passes that scale and shift the log are saved.
    Pixels of zero variance take ``L = 2 ln k`` (log std 0), as in :func:`local_logstd`."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    s2 = _centred_sums(frame[None], size, np)[0]
    zero_at = np.float32(size * size) ** 2  # k²·var for var = 1: L = 2 ln k
    np.copyto(s2, zero_at, where=s2 <= 0)
    logk2var = np.log(s2, out=s2)
    counts, edges = uniform_histogram(logk2var, bins)
    i = int(np.argmax(counts))
    mode = float((edges[i] + edges[i + 1]) / 2)
    # std of L is twice that of the log std: the threshold is the same multiple of it
    threshold = mode + n_std * _std_at_most(logk2var, mode)
    np.greater(logk2var, np.float32(threshold), out=out)


def _logstd_batch(x: Any, size: int, xp: Any) -> Any:
    """:func:`local_logstd` of a whole stack at once (GPU: cupy ufuncs take no
    ``where=``)."""
    s2 = _centred_sums(x, size, xp)
    shift = xp.float32(np.log(np.float32(size * size)))
    out = xp.log(xp.maximum(s2, xp.float32(1e-30)))
    out *= xp.float32(0.5)
    out -= shift
    xp.copyto(out, xp.float32(0), where=s2 <= 0)
    return out


def _box_sum(x: Any, size: int, xp: Any) -> Any:
    """Sum over a ``size x size`` window per frame, edges reflected (scipy's 'reflect').

    Shifted slice additions: several times faster than ``uniform_filter`` for small
    windows, and identical up to float32 rounding.
    """
    out = x
    for axis in (1, 2):
        out = _box_sum1d(out, axis, size, xp)
    return out


def _box_sum1d(a: Any, axis: int, size: int, xp: Any) -> Any:
    before = size // 2
    after = size - 1 - before
    n = a.shape[axis]
    if before >= n:
        raise ValueError(f"window {size} is too large for an axis of length {n}")
    if xp is np and before and axis == a.ndim - 1 and a.flags.c_contiguous and n > 2 * size:
        return _box_sum_rows(a, size, before, after)

    def sl(start: int, stop: int) -> tuple[slice, ...]:
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(start, stop)
        return tuple(idx)

    if before:  # the neighbour at i - 1 summed straight into the output: no copy first
        out = xp.empty_like(a)
        xp.add(a[sl(1, n)], a[sl(0, n - 1)], out=out[sl(1, n)])
        xp.multiply(a[sl(0, 1)], 2, out=out[sl(0, 1)])  # reflected: a[-1] is a[0]
    else:
        out = a.copy()
    for d in range(2, before + 1):  # neighbour at i - d, reflected: a[d - 1 - i] for i < d
        out[sl(d, n)] += a[sl(0, n - d)]
        for i in range(d):
            out[sl(i, i + 1)] += a[sl(d - 1 - i, d - i)]
    for d in range(1, after + 1):  # neighbour at i + d, reflected past the end
        out[sl(0, n - d)] += a[sl(d, n)]
        for i in range(n - d, n):
            j = 2 * n - 1 - (i + d)
            out[sl(i, i + 1)] += a[sl(j, j + 1)]
    return out


def _box_sum_rows(a: np.ndarray, size: int, before: int, after: int) -> np.ndarray:
    """:func:`_box_sum1d` along the last (contiguous) axis: the shifted additions run
    over the flattened array (contiguous, twice as fast as row-wise slices of one pixel
    less), and the ``before`` / ``after`` columns at each row's ends, which wrapped into
    the neighbouring rows, are recomputed column by column (reflected edges)."""
    n = a.shape[-1]
    flat = a.reshape(-1)
    out = np.empty_like(a)
    out_flat = out.reshape(-1)
    np.add(flat[1:], flat[:-1], out=out_flat[1:])  # before >= 1: n > 2 * size > 1
    for d in range(2, before + 1):
        out_flat[d:] += flat[:-d]
    for d in range(1, after + 1):
        out_flat[:-d] += flat[d:]
    for i in [*range(before), *range(n - after, n)]:  # the columns that wrapped
        column = out[..., i]
        column[...] = a[..., i]
        for j in range(i - before, i + after + 1):
            if j != i:  # scipy's 'reflect': index -1 is 0, index n is n - 1
                column += a[..., -j - 1 if j < 0 else 2 * n - 1 - j if j >= n else j]
    return out


def logstd_threshold(logstd: Any, *, bins: int = 200, n_std: float = 3.0) -> float:
    """Threshold of one frame's log std: histogram mode + ``n_std`` x std of values ≤ mode.

    Parameters
    ----------
    logstd : (Y, X) ndarray
        Output of :func:`local_logstd` for one frame.
    bins : int, optional
        Histogram bins; the mode is the centre of the fullest bin.
    n_std : float, optional
        How many standard deviations above the mode.

    Returns
    -------
    threshold : float
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if isinstance(logstd, np.ndarray):
        counts, edges = uniform_histogram(logstd, bins)
        i = int(np.argmax(counts))
        mode = float((edges[i] + edges[i + 1]) / 2)
        return mode + n_std * _std_at_most(logstd, mode)
    xp = _xp_of(logstd)
    counts, edges = xp.histogram(logstd, bins=bins)
    i = int(xp.argmax(counts))
    mode = float((edges[i] + edges[i + 1]) / 2)
    below = logstd[logstd <= mode]
    sigma = float(below.astype(xp.float64).std()) if below.size else 0.0
    return mode + n_std * sigma


def _std_at_most(values: np.ndarray, limit: float) -> float:
    """Standard deviation of the values <= `limit`, from sums of ``min(x - limit, 0)``
    and its square: the values above the limit add zero, no mask or compressed copy is
    made, and centring at the limit keeps float32 sums (pairwise) as accurate as the
    data: the log std's spread is ~5 % of its level, so E[x²] - E[x]² of the raw
    values would lose digits."""
    n = int(np.count_nonzero(values <= limit))
    if not n:
        return 0.0
    below = np.subtract(values, values.dtype.type(limit))
    np.minimum(below, 0, out=below)
    s1 = float(below.sum())
    below *= below
    s2 = float(below.sum())
    mean = s1 / n
    return float(np.sqrt(max(s2 / n - mean * mean, 0.0)))


def _xp_of(array: Any) -> Any:
    import cupy

    return cupy.get_array_module(array)


def _run(mask: Any, axis: int, width: int, op: Any, xp: Any) -> Any:
    """``op``-reduction (and / or) over a centred run of `width` pixels along `axis`,
    with False outside; by binary doubling, so cost grows with log(width)."""
    half = width // 2
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (half, width - 1 - half)
    cur = xp.pad(mask, pad)
    n = mask.shape[axis]

    def take(arr: Any, start: int, stop: int) -> Any:
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(start, stop)
        return arr[tuple(idx)]

    result, offset, k, rem = None, 0, 1, width
    while True:
        if rem & 1:
            piece = take(cur, offset, offset + n)
            result = piece if result is None else op(result, piece)
            offset += k
        rem >>= 1
        if not rem:
            return result
        length = cur.shape[axis]
        cur = op(take(cur, 0, length - k), take(cur, k, length))
        k *= 2


def _packed(xp: Any) -> bool:
    """Whether masks of this array module are eroded / dilated bit-packed (host)."""
    return xp is np and bitmorph.AVAILABLE


def _erode(mask: Any, width: int, xp: Any) -> Any:
    """Binary erosion by a ``width²`` square with zero border (scipy's border_value=0)."""
    if _packed(xp):
        return bitmorph.unpack(
            bitmorph.erode(bitmorph.pack(mask), width, mask.shape[-1]), mask.shape[-1]
        )
    return _run(_run(mask, 1, width, xp.logical_and, xp), 2, width, xp.logical_and, xp)


def _dilate(mask: Any, width: int, xp: Any) -> Any:
    """Binary dilation by a ``width²`` square."""
    if _packed(xp):
        return bitmorph.unpack(
            bitmorph.dilate(bitmorph.pack(mask), width, mask.shape[-1]), mask.shape[-1]
        )
    return _run(_run(mask, 1, width, xp.logical_or, xp), 2, width, xp.logical_or, xp)


def fill_holes(mask: Any, *, backend: Backend | None = None) -> Any:
    """Fill background regions of each frame that do not touch the frame's border.

    Parameters
    ----------
    mask : (T, Y, X) bool ndarray

    Returns
    -------
    filled : (T, Y, X) bool ndarray
        Same as ``scipy.ndimage.binary_fill_holes`` applied frame by frame.
    """
    be = backend or get_backend("cpu")
    mask = _as_stack(mask, "mask")
    xp = be.xp
    if xp is np:
        return fill_holes_runs(mask)
    bg, n = be.ndimage.label(~mask, structure=be.asarray(_CROSS))
    edge = xp.concatenate(
        [bg[:, 0, :].ravel(), bg[:, -1, :].ravel(), bg[:, :, 0].ravel(), bg[:, :, -1].ravel()]
    )
    touching = xp.unique(edge)
    touching = touching[touching > 0]
    if len(touching) <= 4:  # usually one background touches the border: compare, no gather
        filled = bg != touching[0] if len(touching) else xp.ones(bg.shape, dtype=bool)
        for label in touching[1:]:
            filled &= bg != label
        return filled
    touches = xp.zeros(int(n) + 1, dtype=bool)
    touches[touching] = True
    return ~touches[bg]


def clean_mask(
    mask: Any, *, structure_size: int = 7, iterations: int = 3, backend: Backend | None = None
) -> Any:
    """Fill holes, then binary opening and closing with a square, frame by frame.

    Parameters
    ----------
    mask : (T, Y, X) bool ndarray
    structure_size : int, optional
        Side of the square structuring element.
    iterations : int, optional
        Repetitions of each erosion / dilation (a square repeated ``k`` times equals one
        square of side ``k·(s - 1) + 1``, which is what is applied).

    Returns
    -------
    cleaned : (T, Y, X) bool ndarray
        Equal to ``binary_closing(binary_opening(binary_fill_holes(m), s, k), s, k)``.

    Notes
    -----
    For an odd side ``w``, the opening's dilation and the closing's dilation are done as
    one dilation by the square of side ``2w - 1``: a pixel within ``w - 1`` px
    (Chebyshev) of a set pixel always has an in-frame pixel within ``(w - 1) / 2`` of
    both, so the frame's border changes nothing, and one step is saved.
    """
    if structure_size < 1 or iterations < 1:
        raise ValueError(
            f"structure_size and iterations must be >= 1, got {structure_size}, {iterations}"
        )
    be = backend or get_backend("cpu")
    xp = be.xp
    width = iterations * (structure_size - 1) + 1
    filled = fill_holes(mask, backend=be)
    if _packed(xp):  # packed once for the three steps
        x = filled.shape[-1]
        m = bitmorph.erode(bitmorph.pack(filled), width, x)
        if width % 2:
            m = bitmorph.dilate(m, 2 * width - 1, x)
        else:
            m = bitmorph.dilate(bitmorph.dilate(m, width, x), width, x)
        return bitmorph.unpack(bitmorph.erode(m, width, x), x)
    m = _erode(filled, width, xp)
    # an even square is off-centre: two dilations by it do not add up to a centred one
    grown = (
        _dilate(m, 2 * width - 1, xp) if width % 2 else _dilate(_dilate(m, width, xp), width, xp)
    )
    return _erode(grown, width, xp)


def segment_logstd(
    frames: Any,
    *,
    size: int = 3,
    bins: int = 200,
    n_std: float = 3.0,
    structure_size: int = 7,
    iterations: int = 3,
    backend: Backend | None = None,
) -> Any:
    """Segment cells in phase-contrast frames.

    Parameters
    ----------
    frames : (T, Y, X) or (Y, X) ndarray
        Phase-contrast frames.
    size, bins, n_std, structure_size, iterations
        See :func:`local_logstd`, :func:`logstd_threshold`, :func:`clean_mask`.
    backend : Backend, optional

    Returns
    -------
    mask : (T, Y, X) bool ndarray

    References
    ----------
    PyAMA (pyama-core), ``processing/segmentation/log_std.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 1, (1, 64, 64)).astype(np.float32)
    >>> img[0, 20:40, 20:40] += rng.normal(0, 30, (20, 20))
    >>> bool(segment_logstd(img)[0, 30, 30])
    True
    """
    be = backend or get_backend("cpu")
    if be.name == "cpu":
        x = _as_stack(np.asarray(frames))
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        raw = np.empty(x.shape, dtype=bool)
        for frame, target in zip(x, raw, strict=True):
            _foreground_frame(frame, size, bins, n_std, target)
        return clean_mask(raw, structure_size=structure_size, iterations=iterations, backend=be)
    logstd = local_logstd(frames, size=size, backend=be)
    thresholds = [logstd_threshold(f, bins=bins, n_std=n_std) for f in logstd]
    t = be.xp.asarray(thresholds, dtype=be.xp.float32)[:, None, None]
    raw = logstd > t
    del logstd
    return clean_mask(raw, structure_size=structure_size, iterations=iterations, backend=be)
