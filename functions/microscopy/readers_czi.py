"""Zeiss CZI through ``pylibCZIrw``; scenes are FOVs.

Metadata come from the XML document and the subblock directory only (no pixel data).
A time increment is used only when the file states its unit; otherwise times are
frame indices (``time_units="frame"``), never an assumed unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UnsupportedFile
from functions.microscopy.metadata import ChannelInfo, MicroscopyMetadata, to_minutes
from functions.microscopy.readers import _Base

_DTYPES = {"Gray8": "uint8", "Gray16": "uint16", "Gray32Float": "float32"}


def _get(tree: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _num(v: Any) -> float | None:
    try:
        return float(v["#text"] if isinstance(v, dict) else v)
    except (TypeError, ValueError, KeyError):
        return None


class CziReader(_Base):
    """Zeiss CZI files; each scene is a FOV and must share one frame size."""

    def __init__(self, path: str | Path) -> None:
        from pylibCZIrw import czi as pyczi

        self.path = Path(path)
        try:
            self._cm = pyczi.open_czi(str(self.path))
            self._r = self._cm.__enter__()
        except Exception as exc:
            raise UnsupportedFile(f"{self.path.name} is not a readable CZI file: {exc}") from None
        try:
            self.metadata = self._read_metadata()
        except Exception as exc:
            self.close()
            if isinstance(exc, UnsupportedFile):
                raise
            raise UnsupportedFile(f"{self.path.name}: CZI metadata is unreadable: {exc}") from None

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def _read_metadata(self) -> MicroscopyMetadata:
        r, name = self._r, self.path.name
        box = r.total_bounding_box
        scenes = r.scenes_bounding_rectangle or {}
        self._rois = [scenes[k] for k in sorted(scenes)] if scenes else [r.total_bounding_rectangle]
        sizes = {(roi.w, roi.h) for roi in self._rois}
        if len(sizes) != 1:
            raise UnsupportedFile(f"{name}: CZI scenes differ in size {sorted(sizes)}")
        types = set(r.pixel_types.values())
        if len(types) != 1 or next(iter(types)) not in _DTYPES:
            raise UnsupportedFile(f"{name}: unsupported CZI pixel types {sorted(types)}")
        n = {k: box.get(k, (0, 1))[1] - box.get(k, (0, 1))[0] for k in ("T", "C", "Z")}
        self._start = {k: box.get(k, (0, 1))[0] for k in ("T", "C", "Z")}
        md = _get(r.metadata, "ImageDocument", "Metadata") or {}
        channels = self._channels(md, n["C"])
        scaling = {
            d.get("@Id"): _num(d.get("Value"))
            for d in _as_list(_get(md, "Scaling", "Items", "Distance"))
        }
        x, z = scaling.get("X"), scaling.get("Z")
        times, source = self._times(md, n["T"])
        objective = _as_list(_get(md, "Information", "Instrument", "Objectives", "Objective"))
        obj = objective[0] if objective and isinstance(objective[0], dict) else {}
        w, h = next(iter(sizes))
        return MicroscopyMetadata(
            base_name=self.path.stem,
            file_type="czi",
            file_path=str(self.path),
            height=h,
            width=w,
            n_frames=n["T"],
            n_fovs=len(self._rois),
            n_channels=n["C"],
            n_z=n["Z"],
            dtype=_DTYPES[next(iter(types))],
            channels=channels,
            channel_names=[c.name for c in channels],
            timepoints=times,
            time_source=source,
            time_units="min" if source != "none" else "frame",
            pixel_size_um=x * 1e6 if x else None,
            z_step_um=z * 1e6 if z and n["Z"] > 1 else None,
            objective=obj.get("@Name"),
            magnification=_num(obj.get("NominalMagnification")),
        )

    @staticmethod
    def _channels(md: Any, n_c: int) -> list[ChannelInfo]:
        raw = _as_list(_get(md, "Information", "Image", "Dimensions", "Channels", "Channel"))
        out = [
            ChannelInfo(
                index=i,
                name=str(ch.get("@Name") or ch.get("@Id") or f"C{i}"),
                emission_nm=_num(ch.get("EmissionWavelength")),
                excitation_nm=_num(ch.get("ExcitationWavelength")),
            )
            for i, ch in enumerate(raw)
            if isinstance(ch, dict)
        ]
        return out if len(out) == n_c else [ChannelInfo(index=i, name=f"C{i}") for i in range(n_c)]

    @staticmethod
    def _times(md: Any, n_t: int) -> tuple[list[float], Any]:
        span = _get(
            md, "Information", "Image", "Dimensions", "T", "Positions", "Interval", "Increment"
        )
        unit = _get(
            md,
            "Information",
            "Image",
            "Dimensions",
            "T",
            "Positions",
            "Interval",
            "DefaultUnitFormat",
        )
        step = _num(span)
        if step and isinstance(unit, str):
            try:
                minutes = to_minutes(step, unit)
            except ValueError:
                minutes = None
            if minutes:
                return [t * minutes for t in range(n_t)], "increment"
        return [float(t) for t in range(n_t)], "none"

    def read(self, fov: int, channel: int, start: int, stop: int, *, z: int = 0) -> np.ndarray:
        """Frames ``start..stop-1`` as ``(n, Y, X)`` in the file's dtype."""
        self.check(fov, channel, start, stop, z)
        m, roi = self.metadata, self._rois[fov]
        out = np.empty((stop - start, m.height, m.width), dtype=m.dtype)
        for i, t in enumerate(range(start, stop)):
            plane = {
                "T": t + self._start["T"],
                "C": channel + self._start["C"],
                "Z": z + self._start["Z"],
            }
            try:
                data = self._r.read(plane=plane, roi=(roi.x, roi.y, roi.w, roi.h))
            except Exception as exc:
                raise UnsupportedFile(f"{self.path.name}: frame {t} is unreadable: {exc}") from None
            out[i] = data[..., 0]
        return out
