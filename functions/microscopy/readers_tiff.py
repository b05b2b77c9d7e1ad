"""OME-TIFF and plain / ImageJ TIFF stacks through ``tifffile``.

A multi-series OME-TIFF (one OME ``Image`` per FOV) gives one FOV per series. Time
comes from the OME ``Plane`` ``DeltaT`` (with ``DeltaTUnit``), else ``TimeIncrement``
(with ``TimeIncrementUnit``, seconds by default as OME says), else ImageJ's
``finterval``; never from an assumed unit. Only IFDs and XML are parsed to build the
metadata: pixel data are read by :meth:`TiffReader.read` alone.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np

from common.errors import UnsupportedFile
from common.filekinds import tiff_kind
from functions.microscopy.metadata import (
    ChannelInfo,
    MicroscopyMetadata,
    to_micrometres,
    to_minutes,
)
from functions.microscopy.readers import (
    Source,
    WholeSlideImage,
    _Base,
    is_file_object,
    source_path,
)


def _float(el: Any, name: str) -> float | None:
    v = el.get(name) if el is not None else None
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


class _Series:
    """How the pages of one tifffile series map to (T, C, Z)."""

    def __init__(self, series: Any, name: str) -> None:
        axes = series.get_axes(False)
        shape = series.get_shape(False)
        if "Y" not in axes or "X" not in axes:
            raise UnsupportedFile(f"{name}: TIFF series has axes {axes!r}, no Y and X")
        iy = axes.index("Y")
        page_start = iy - 1 if iy > 0 and axes[iy - 1] == "S" else iy
        self.page_axes = axes[page_start:]
        outer_axes, outer_shape = axes[:page_start], shape[:page_start]
        self.series = series
        self.height, self.width = shape[iy], shape[axes.index("X")]
        self.samples = shape[axes.index("S")] if "S" in self.page_axes else 1
        role: dict[str, int] = {}
        for i, (a, n) in enumerate(zip(outer_axes, outer_shape, strict=True)):
            key = a if a in "TCZ" else ("T" if n > 1 else None)
            if key is None:
                continue
            if key in role:
                raise UnsupportedFile(f"{name}: cannot map TIFF axes {axes!r} to T, C, Z")
            role[key] = i
        self.outer_shape = tuple(outer_shape)
        self.role = role
        self.n_t = outer_shape[role["T"]] if "T" in role else 1
        self.n_z = outer_shape[role["Z"]] if "Z" in role else 1
        n_c = outer_shape[role["C"]] if "C" in role else 1
        if n_c > 1 and self.samples > 1:
            raise UnsupportedFile(f"{name}: both channel pages and RGB samples ({axes!r})")
        self.n_c = max(n_c, self.samples)
        if len(series.pages) != int(np.prod(outer_shape, dtype=np.int64)):
            raise UnsupportedFile(
                f"{name}: TIFF has {len(series.pages)} pages where its "
                f"axes {axes!r} {shape} need {int(np.prod(outer_shape))}"
            )

    def page(self, t: int, c: int, z: int) -> tuple[int, int | None]:
        idx = [0] * len(self.outer_shape)
        for key, v in (("T", t), ("C", c), ("Z", z)):
            if key in self.role:
                idx[self.role[key]] = v
        flat = int(np.ravel_multi_index(idx, self.outer_shape)) if idx else 0
        return flat, (c if self.samples > 1 else None)


class _Errors(logging.Handler):
    """Collects the errors tifffile logs (instead of raising) for broken IFD chains."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[_Errors]:
    log = logging.getLogger("tifffile")
    handler, propagate = _Errors(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


class TiffReader(_Base):
    """OME-TIFF (multi-series: FOVs) and plain or ImageJ TIFF stacks."""

    def __init__(
        self, path: Source, *, name: str | None = None, microscopy_only: bool = False
    ) -> None:
        import tifffile

        self.path = source_path(path, name)
        self._file_path = None if is_file_object(path) else str(self.path)
        with _tifffile_errors() as errors:
            try:
                source: Any = path if is_file_object(path) else self.path
                self._tf = tifffile.TiffFile(source)
            except Exception as exc:
                raise UnsupportedFile(
                    f"{self.path.name} is not a readable TIFF file: {exc}"
                ) from None
            try:
                self.metadata = self._read_metadata(microscopy_only)
                if errors.messages:
                    raise UnsupportedFile(
                        f"{self.path.name} is truncated or corrupt: {errors.messages[0]}"
                    )
            except Exception:
                self._tf.close()
                raise

    def _read_metadata(self, microscopy_only: bool) -> MicroscopyMetadata:
        try:
            if microscopy_only and tiff_kind(self._tf) == "slide":
                raise WholeSlideImage(f"{self.path.name} is a whole-slide image")
            return self._parse()
        except UnsupportedFile:
            raise
        except Exception as exc:
            raise UnsupportedFile(
                f"{self.path.name}: TIFF structure is unreadable: {exc}"
            ) from None

    def close(self) -> None:
        self._tf.close()

    def _parse(self) -> MicroscopyMetadata:
        tf, name = self._tf, self.path.name
        series = list(tf.series)
        if not series:
            raise UnsupportedFile(f"{name}: TIFF holds no image series")
        ome = ET.fromstring(tf.ome_metadata) if tf.is_ome and tf.ome_metadata else None
        images = [e for e in ome if e.tag.endswith("}Image")] if ome is not None else []
        if images and len(images) != len(series):
            images = []
        self._series = [_Series(s, name) for s in series]
        first = self._series[0]
        for s in self._series[1:]:
            if (s.height, s.width, s.n_t, s.n_c, s.n_z) != (
                first.height,
                first.width,
                first.n_t,
                first.n_c,
                first.n_z,
            ):
                raise UnsupportedFile(
                    f"{name}: TIFF series differ in shape; not one experiment's FOVs"
                )
        self._check_pages(name)
        fields = _ome_fields(images[0], ome, first) if images else _plain_fields(tf, first)
        channels = fields.pop("channels")
        return MicroscopyMetadata(
            base_name=self.path.name.split(".")[0],
            file_path=self._file_path,
            file_type="ome-tiff" if images else "tiff",
            height=first.height,
            width=first.width,
            n_frames=first.n_t,
            n_fovs=len(self._series),
            n_channels=first.n_c,
            n_z=first.n_z,
            dtype=str(np.dtype(series[0].dtype)),
            channels=channels,
            channel_names=[c.name for c in channels],
            **fields,
        )

    def _check_pages(self, name: str) -> None:
        """Refuse truncated files and undecodable compression without reading pixels."""
        size = self._tf.filehandle.size
        for s in self._series:
            import tifffile

            try:
                tifffile.TIFF.DECOMPRESSORS[s.series.keyframe.compression]
            except Exception as exc:  # KeyError for unknown or unavailable codecs
                raise UnsupportedFile(
                    f"{name}: TIFF compression cannot be decoded: {exc}"
                ) from None
            last = s.series.pages[len(s.series.pages) - 1]
            ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts, strict=True)]
            if ends and max(ends) > size:
                raise UnsupportedFile(
                    f"{name}: TIFF is truncated (pixel data end at byte "
                    f"{max(ends)} of a {size}-byte file)"
                )

    def read(self, fov: int, channel: int, start: int, stop: int, *, z: int = 0) -> np.ndarray:
        """Frames ``start..stop-1`` as ``(n, Y, X)`` in the file's dtype."""
        self.check(fov, channel, start, stop, z)
        s = self._series[fov]
        out = np.empty((stop - start, s.height, s.width), dtype=self.metadata.dtype)
        for i, t in enumerate(range(start, stop)):
            index, sample = s.page(t, channel, z)
            try:
                data = s.series.pages[index].asarray()
            except Exception as exc:
                raise UnsupportedFile(f"{self.path.name}: frame {t} is unreadable: {exc}") from None
            data = data.reshape(_page_shape(s))
            if sample is not None:
                data = data[..., sample] if s.page_axes.endswith("S") else data[sample]
            out[i] = data.reshape(s.height, s.width)
        return out


def _page_shape(s: _Series) -> tuple[int, ...]:
    if s.samples == 1:
        return (s.height, s.width)
    if s.page_axes.startswith("S"):
        return (s.samples, s.height, s.width)
    return (s.height, s.width, s.samples)


def _ome_fields(image: Any, root: Any, series: _Series) -> dict[str, Any]:
    ns = image.tag.split("}")[0] + "}"
    px = image.find(f"{ns}Pixels")
    if px is None:
        raise UnsupportedFile("OME-XML Image has no Pixels element")
    channels = []
    for i, ch in enumerate(px.findall(f"{ns}Channel")):
        channels.append(
            ChannelInfo(
                index=i,
                name=ch.get("Name") or ch.get("ID") or f"C{i}",
                emission_nm=_wavelength(ch, "EmissionWavelength"),
                excitation_nm=_wavelength(ch, "ExcitationWavelength"),
            )
        )
    if len(channels) != series.n_c:
        channels = [ChannelInfo(index=i, name=f"C{i}") for i in range(series.n_c)]
    size_x = _float(px, "PhysicalSizeX")
    size_z = _float(px, "PhysicalSizeZ")
    times, source = _ome_times(px, ns, series.n_t)
    objective, magnification = None, None
    obj = root.find(f"{ns}Instrument/{ns}Objective") if root is not None else None
    if obj is not None:
        objective = obj.get("Model") or obj.get("ID")
        magnification = _float(obj, "NominalMagnification")
    return {
        "channels": channels,
        "pixel_size_um": to_micrometres(size_x, px.get("PhysicalSizeXUnit", "µm"))
        if size_x
        else None,
        "z_step_um": to_micrometres(size_z, px.get("PhysicalSizeZUnit", "µm"))
        if size_z and series.n_z > 1
        else None,
        "timepoints": times,
        "time_source": source,
        "time_units": "min" if source != "none" else "frame",
        "objective": objective,
        "magnification": magnification,
    }


def _wavelength(ch: Any, name: str) -> float | None:
    v = _float(ch, name)
    if v is None:
        return None
    return to_micrometres(v, ch.get(f"{name}Unit", "nm")) * 1000.0


def _ome_times(px: Any, ns: str, n_t: int) -> tuple[list[float], str]:
    deltas: dict[int, float] = {}
    for plane in px.findall(f"{ns}Plane"):
        dt = _float(plane, "DeltaT")
        if dt is None or plane.get("TheC", "0") != "0" or plane.get("TheZ", "0") != "0":
            continue
        deltas[int(plane.get("TheT", "0"))] = to_minutes(dt, plane.get("DeltaTUnit", "s"))
    if len(deltas) == n_t:
        return [deltas[t] for t in range(n_t)], "timestamps"
    inc = _float(px, "TimeIncrement")
    if inc:
        step = to_minutes(inc, px.get("TimeIncrementUnit", "s"))
        return [t * step for t in range(n_t)], "increment"
    return [float(t) for t in range(n_t)], "none"


def _plain_fields(tf: Any, series: _Series) -> dict[str, Any]:
    ij = tf.imagej_metadata or {}
    channels = [ChannelInfo(index=i, name=f"C{i}") for i in range(series.n_c)]
    labels = ij.get("Labels")
    if isinstance(labels, list) and len(labels) == series.n_c:
        channels = [ChannelInfo(index=i, name=str(n)) for i, n in enumerate(labels)]
    pixel, z_step = None, None
    unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
    if unit in ("micron", "µm", "um"):
        res = tf.pages[0].tags.get("XResolution")
        if res is not None and res.value[0]:
            pixel = res.value[1] / res.value[0]
        z_step = float(ij["spacing"]) if "spacing" in ij and series.n_z > 1 else None
    finterval = ij.get("finterval")
    if finterval:
        step = to_minutes(float(finterval), str(ij.get("tunit", "s")).replace("sec", "s"))
        times, source = [t * step for t in range(series.n_t)], "increment"
    else:
        times, source = [float(t) for t in range(series.n_t)], "none"
    return {
        "channels": channels,
        "pixel_size_um": pixel,
        "z_step_um": z_step,
        "timepoints": times,
        "time_source": source,
        "time_units": "min" if source != "none" else "frame",
        "objective": None,
        "magnification": None,
    }
