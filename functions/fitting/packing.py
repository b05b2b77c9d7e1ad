"""Fit outputs (`FitArrays`) as npz bytes: what a `fitting.chunk` child hands back to its
parent, and what a `fitting.plots` child is given."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from functions.fitting.fit import FitArrays

FIT_FIELDS = (
    "params",
    "stderr",
    "ss_res",
    "r_squared",
    "n_points",
    "iterations",
    "status",
    "lower",
    "upper",
)


def pack_fit(fit: FitArrays, **extra: np.ndarray) -> bytes:
    """npz bytes of `fit` (and of `extra` arrays, which must not pickle)."""
    arrays: dict[str, Any] = {
        "names": np.array(fit.names),
        "free": fit.free,
        "device": np.array(fit.device),
        **{k: getattr(fit, k) for k in FIT_FIELDS},
        **extra,
    }
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def unpack_fit(data: bytes | Mapping[str, Any]) -> FitArrays:
    """The fit `pack_fit` stored, from its bytes or its loaded npz."""
    if isinstance(data, bytes):
        with np.load(io.BytesIO(data)) as z:
            return unpack_fit(z)
    arrays: dict[str, Any] = {k: data[k] for k in FIT_FIELDS}
    return FitArrays(
        names=tuple(str(v) for v in data["names"]),
        free=data["free"],
        device=str(data["device"]),
        **arrays,
    )


def merge_fits(parts: Sequence[FitArrays]) -> FitArrays:
    """The fits of consecutive slices of traces as one, in order."""
    first = parts[0]
    arrays: dict[str, Any] = {k: np.concatenate([getattr(p, k) for p in parts]) for k in FIT_FIELDS}
    return FitArrays(names=first.names, free=first.free, device=first.device, **arrays)
