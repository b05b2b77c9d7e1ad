"""Binary erosion and dilation by squares on bit-packed masks (host).

A ``(T, Y, X)`` bool mask is packed along X into 64-bit words, pixel ``x`` being bit
``x % 64`` of word ``x // 64`` (little-endian), so every logical operation touches an
eighth of the bytes a bool array has. Along Y a square's run is a word-wise AND / OR of
shifted rows; along X it is the same of bit-shifted rows, the bits carried across
words. Runs are built by binary doubling, so cost grows with log(width). Results are
those of :func:`scipy.ndimage.binary_erosion` / ``binary_dilation`` with a square
(nothing outside the frame: ``border_value=0``), frame by frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

Op = Any  # np.bitwise_and or np.bitwise_or (ufuncs: called with out=)

#: the word layout above needs a little-endian host (every host numpy targets today)
AVAILABLE = sys.byteorder == "little"


def pack(mask: np.ndarray) -> np.ndarray:
    """``(T, Y, X)`` bool -> ``(T, Y, ceil(X / 64))`` uint64, bits past X zero."""
    t, h, w = mask.shape
    words = -(-w // 64)
    out = np.zeros((t, h, words * 8), dtype=np.uint8)
    out[..., : -(-w // 8)] = np.packbits(mask, axis=-1, bitorder="little")
    return out.view(np.uint64)


def unpack(words: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``(T, Y, width)`` bool."""
    bits = np.unpackbits(words.view(np.uint8), axis=-1, count=width, bitorder="little")
    return bits.view(bool)


def _tail_mask(width: int, words: int) -> np.ndarray:
    """Per word, the bits that are pixels of a row `width` px long."""
    keep = np.full(words, np.uint64(2**64 - 1), dtype=np.uint64)
    if width % 64:
        keep[-1] = np.uint64((1 << (width % 64)) - 1)
    return keep


def _shift_x(a: np.ndarray, s: int) -> np.ndarray:
    """``b[..., x] = a[..., x + s]``, zero where ``x + s`` falls outside the words."""
    n = a.shape[-1]
    q, r = divmod(abs(s), 64)
    out = np.zeros_like(a)
    if q >= n:
        return out
    if s >= 0:
        src, dst = a[..., q:], out[..., : n - q]
        np.right_shift(src, np.uint64(r), out=dst)
        if r:
            dst[..., :-1] |= src[..., 1:] << np.uint64(64 - r)
    else:
        src, dst = a[..., : n - q], out[..., q:]
        np.left_shift(src, np.uint64(r), out=dst)
        if r:
            dst[..., 1:] |= src[..., :-1] >> np.uint64(64 - r)
    return out


def _shift_y(a: np.ndarray, s: int) -> np.ndarray:
    """``b[:, y] = a[:, y + s]``, zero where ``y + s`` falls outside the frame."""
    n = a.shape[1]
    out = np.zeros_like(a)
    if abs(s) >= n:
        return out
    if s >= 0:
        out[:, : n - s] = a[:, s:]
    else:
        out[:, -s:] = a[:, : n + s]
    return out


def _run(
    a: np.ndarray, width: int, op: Op, shift: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """``op``-reduction over the centred run ``[x - width // 2, x - width // 2 + width)``
    along the axis that `shift` moves: the run from x forward and the one from x back,
    each by binary doubling in one direction only, so that the zeros a shift brings in
    always stand for pixels outside the frame (a doubled run shifted back across the
    edge would lose the in-frame pixels it covers)."""
    half = width // 2
    out = _directed(a, width - half, op, shift, 1)
    if half:
        op(out, _directed(a, half + 1, op, shift, -1), out=out)
    return out


def _directed(
    a: np.ndarray, length: int, op: Op, shift: Callable[[np.ndarray, int], np.ndarray], sign: int
) -> np.ndarray:
    """``op`` over ``a[x], a[x + sign], ..., a[x + sign·(length - 1)]``; a new array."""
    result: np.ndarray | None = None
    offset, k, rem, cur = 0, 1, length, a
    while True:
        if rem & 1:
            piece = shift(cur, sign * offset) if offset else cur
            if result is None:  # the first piece is written into: never the input
                result = piece.copy() if piece is a else piece
            else:
                op(result, piece, out=result)
            offset += k
        rem >>= 1
        if not rem:
            assert result is not None
            return result
        cur = op(cur, shift(cur, sign * k))
        k *= 2


def erode(words: np.ndarray, side: int, width: int) -> np.ndarray:
    """Erosion of a packed mask by a ``side²`` square; `width` the frame's X size."""
    out = _run(_run(words, side, np.bitwise_and, _shift_y), side, np.bitwise_and, _shift_x)
    out &= _tail_mask(width, words.shape[-1])
    return out  # type: ignore[no-any-return]


def dilate(words: np.ndarray, side: int, width: int) -> np.ndarray:
    """Dilation of a packed mask by a ``side²`` square; `width` the frame's X size."""
    out = _run(_run(words, side, np.bitwise_or, _shift_y), side, np.bitwise_or, _shift_x)
    out &= _tail_mask(width, words.shape[-1])  # nothing grows into the padding bits
    return out  # type: ignore[no-any-return]
