"""Microscopy readers behind one interface: metadata without pixels, frames on demand.

``open_reader(path)`` picks the reader from the file's leading bytes (never from its
name; the families are told apart by :mod:`common.filekinds`, as for uploads and the
``metadata`` capability), so a mislabelled file is read as what it is or refused with
:class:`common.errors.UnsupportedFile`. Asked for microscopy only, the TIFF reader
refuses a whole-slide image by the same module's rule (:class:`WholeSlideImage`), in the
same parse of the file's directories that reads its metadata.
ND2 and TIFF readers also take a seekable binary file object (e.g.
:class:`common.objects.ranged.RangedReader` over S3), so metadata can be read without a
local copy; CZI needs a real path (pylibCZIrw opens files by name only). Every reader
reports the same :class:`MicroscopyMetadata` and reads ``(n, Y, X)`` frame batches of
one FOV, channel and z plane, so a workflow never holds more than one batch.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

import numpy as np

from common.errors import UnsupportedFile
from common.filekinds import HEAD_BYTES, family_of
from functions.microscopy.metadata import ChannelInfo, MicroscopyMetadata

#: What a reader opens: a path, or a seekable binary file object (ND2 and TIFF only).
Source = str | Path | IO[bytes] | io.RawIOBase


class WholeSlideImage(UnsupportedFile):
    """A TIFF that is a whole-slide image (:func:`common.filekinds.tiff_kind`), refused by
    a reader asked for microscopy only."""

    default_message = "the file is a whole-slide image, not a microscopy file"


def is_file_object(source: Source) -> bool:
    return hasattr(source, "read") and hasattr(source, "seek")


def source_path(source: Source, name: str | None = None) -> Path:
    """The path (or, for a file object, the `name` given for it) that messages and
    ``base_name`` use."""
    if is_file_object(source):
        return Path(name or "unnamed")
    return Path(source)  # type: ignore[arg-type]


class Reader(Protocol):
    """A microscopy file opened for reading."""

    metadata: MicroscopyMetadata

    def read(self, fov: int, channel: int, start: int, stop: int, *, z: int = 0) -> np.ndarray:
        """Frames ``start..stop-1`` of one FOV, channel and z plane as ``(n, Y, X)``."""

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Base:
    metadata: MicroscopyMetadata

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def check(self, fov: int, channel: int, start: int, stop: int, z: int) -> None:
        m = self.metadata
        if not (
            0 <= fov < m.n_fovs
            and 0 <= channel < m.n_channels
            and 0 <= z < m.n_z
            and 0 <= start <= stop <= m.n_frames
        ):
            raise ValueError(
                f"fov={fov}, channel={channel}, frames {start}:{stop}, z={z} outside dims {m.dims}"
            )


def sniff(path: Source, *, name: str | None = None) -> str:
    """File type from the leading bytes: "nd2", "tiff" or "czi"; UnsupportedFile else."""
    shown = source_path(path, name).name
    try:
        if is_file_object(path):
            fh: Any = path
            fh.seek(0)
            head = fh.read(HEAD_BYTES)
            fh.seek(0)  # tifffile takes a file object's position as the file's start
        else:
            with open(path, "rb") as fh:  # type: ignore[arg-type]
                head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise UnsupportedFile(f"cannot open {shown}: {exc.strerror or exc}") from None
    family = family_of(head)
    if family in ("nd2", "tiff", "czi"):
        return family
    raise UnsupportedFile(f"{shown} is not an ND2, CZI or TIFF file (unrecognised leading bytes)")


def open_reader(path: Source, *, name: str | None = None, microscopy_only: bool = False) -> Reader:
    """Open a microscopy file (a path, or a seekable binary file object named `name`);
    raises UnsupportedFile for unknown, corrupt or truncated files, and with
    `microscopy_only` :class:`WholeSlideImage` for a slide TIFF (else any TIFF is read
    as a stack).

    Examples
    --------
    >>> with open_reader("cluster.nd2") as r:  # doctest: +SKIP
    ...     r.metadata.n_z
    10
    """
    kind = sniff(path, name=name)
    if kind == "nd2":
        return Nd2Reader(path, name=name)
    if kind == "czi":
        from functions.microscopy.readers_czi import CziReader

        if is_file_object(path):
            raise TypeError("CZI files need a path: pylibCZIrw cannot read file objects")
        return CziReader(path)  # type: ignore[arg-type]
    from functions.microscopy.readers_tiff import TiffReader

    return TiffReader(path, name=name, microscopy_only=microscopy_only)


def read_metadata(
    path: Source, *, name: str | None = None, microscopy_only: bool = False
) -> MicroscopyMetadata:
    """Metadata of a microscopy file (a path, or for ND2 and TIFF a seekable binary file
    object named `name`) without reading pixel data (`microscopy_only`: see
    :func:`open_reader`)."""
    with open_reader(path, name=name, microscopy_only=microscopy_only) as reader:
        return reader.metadata


class Nd2Reader(_Base):
    """Nikon ND2 through the ``nd2`` package; XY positions are FOVs."""

    def __init__(self, path: Source, *, name: str | None = None) -> None:
        import nd2

        self.path = source_path(path, name)
        self._file_path = None if is_file_object(path) else str(self.path)
        try:
            source: Any = path if is_file_object(path) else self.path
            self._f = nd2.ND2File(source)
        except Exception as exc:  # nd2 raises many types for corrupt files
            raise UnsupportedFile(f"{self.path.name} is not a readable ND2 file: {exc}") from None
        try:
            self.metadata = self._read_metadata()
        except UnsupportedFile:
            self._f.close()
            raise
        except Exception as exc:
            self._f.close()
            raise UnsupportedFile(f"{self.path.name}: ND2 metadata is unreadable: {exc}") from None

    def close(self) -> None:
        self._f.close()

    def _seq_index(self) -> dict[tuple[int, int, int], int]:
        return {
            (d.get("P", 0), d.get("T", 0), d.get("Z", 0)): i
            for i, d in enumerate(self._f.loop_indices)
        }

    def _read_metadata(self) -> MicroscopyMetadata:
        f = self._f
        sizes = dict(f.sizes)
        unknown = set(sizes) - {"P", "T", "C", "Z", "Y", "X", "S"}
        if unknown:
            raise UnsupportedFile(f"{self.path.name}: unsupported ND2 axes {sorted(unknown)}")
        self._seq = self._seq_index()
        n_c = sizes.get("C", 1) * sizes.get("S", 1)
        channels = []
        for i, ch in enumerate(f.metadata.channels or []):
            channels.append(
                ChannelInfo(
                    index=i,
                    name=ch.channel.name,
                    emission_nm=ch.channel.emissionLambdaNm,
                    excitation_nm=ch.channel.excitationLambdaNm,
                )
            )
        if len(channels) != n_c:
            channels = [ChannelInfo(index=i, name=f"C{i}") for i in range(n_c)]
        micro = f.metadata.channels[0].microscope if f.metadata.channels else None
        vx = f.voxel_size()
        n_t = sizes.get("T", 1)
        times, source = self._timepoints(n_t)
        return MicroscopyMetadata(
            base_name=self.path.stem,
            file_type="nd2",
            file_path=self._file_path,
            height=sizes["Y"],
            width=sizes["X"],
            n_frames=n_t,
            n_fovs=sizes.get("P", 1),
            n_channels=n_c,
            n_z=sizes.get("Z", 1),
            dtype=str(np.dtype(f.dtype)),
            channel_names=[c.name for c in channels],
            channels=channels,
            timepoints=times,
            time_units="min" if source != "none" else "frame",
            time_source=source,
            pixel_size_um=float(vx.x) if vx and vx.x > 0 else None,
            z_step_um=float(vx.z) if vx and "Z" in sizes and vx.z > 0 else None,
            objective=getattr(micro, "objectiveName", None),
            magnification=getattr(micro, "objectiveMagnification", None),
        )

    def _timepoints(self, n_t: int) -> tuple[list[float], Any]:
        """Per-frame times of FOV 0, z 0 from frame timestamps (ms in ND2), else the
        time loop's period, else frame indices."""
        try:
            times = []
            for t in range(n_t):
                meta: Any = self._f.frame_metadata(self._seq[(0, t, 0)])
                times.append(meta.channels[0].time.relativeTimeMs / 60_000.0)
            return [x - times[0] for x in times], "timestamps"
        except Exception:  # frame metadata missing: fall back below
            pass
        for loop in self._f.experiment or []:
            period = getattr(getattr(loop, "parameters", None), "periodMs", 0) or 0
            if loop.type == "TimeLoop" and period > 0:
                return [t * period / 60_000.0 for t in range(n_t)], "increment"
        return [float(t) for t in range(n_t)], "none"

    def read(self, fov: int, channel: int, start: int, stop: int, *, z: int = 0) -> np.ndarray:
        """Frames ``start..stop-1`` as ``(n, Y, X)`` in the file's dtype."""
        self.check(fov, channel, start, stop, z)
        m = self.metadata
        out = np.empty((stop - start, m.height, m.width), dtype=m.dtype)
        for i, t in enumerate(range(start, stop)):
            frame = np.asarray(self._f.read_frame(self._seq[(fov, t, z)]))
            if frame.ndim == 2:
                out[i] = frame
            elif frame.shape[-1] == m.n_channels and frame.shape[0] == m.height:
                out[i] = frame[..., channel]  # RGB: (Y, X, S)
            else:
                out[i] = frame.reshape(-1, m.height, m.width)[channel]
        return out
