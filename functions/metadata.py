"""Capability ``metadata``: what a stored file is and holds, without reading pixel data.

The file's content decides, never its name, by the rule in :mod:`common.filekinds` that
upload checks use too: ND2, CZI and microscopy TIFFs (OME, ImageJ, plain stacks) go to
:func:`functions.microscopy.readers.read_metadata`; whole-slide images (vendor TIFFs
such as SVS, NDPI, SCN; other tiled pyramids; DICOM) to :func:`describe_slide`;
anything else is :class:`common.errors.UnsupportedFile`.

The cost does not grow with the file's size. With the directory store the object's
own file is read in place. Elsewhere (S3) ND2 and TIFF are parsed through a
:class:`common.objects.ranged.RangedReader`, which fetches only the byte ranges the
parser asks for. Two kinds need a real path and get a temporary copy: CZI (pylibCZIrw
opens files by name only) and whole-slide images (OpenSlide opens files by name only).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, StoredFile, capability
from common.errors import UnsupportedFile
from common.filekinds import HEAD_BYTES, family_of
from common.objects import ObjectStore
from common.objects.access import stored_path
from common.objects.ranged import RangedReader
from functions.microscopy.readers import WholeSlideImage

Kind = Literal["microscopy", "slide"]


class MetadataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="A stored microscopy file or whole-slide image.")


class MetadataResult(BaseModel):
    kind: Kind = Field(description='"microscopy" (time-lapse stacks) or "slide".')
    metadata: dict[str, Any]


@capability(
    "metadata",
    params=MetadataParams,
    result=MetadataResult,
    resources=Resources(cpu=0.5, memory_mib=1024, timeout_s=600),
)
def run_metadata(params: MetadataParams, ctx: Context) -> MetadataResult:
    """Read a stored file's metadata (dimensions, channels, times, pixel size) without
    its pixel data; microscopy files and whole-slide images (which also get their
    `slides` record)."""
    stored = ctx.file(params.file_id)
    result = describe_stored(ctx.objects, stored)
    if result.kind == "slide":
        from functions.slides.records import record_slide

        record_slide(stored, ctx, result.metadata)
    return result


def describe_stored(objects: ObjectStore, stored: StoredFile) -> MetadataResult:
    """Metadata of a stored file, read in place, through byte ranges, or (CZI and
    slides on a store without local files) from a temporary copy."""
    local = objects.local_path(stored.key)
    if local is not None:
        return describe_path(local, name=stored.name)
    with RangedReader(objects, stored.key, size=stored.size) as ranged:
        fh = cast(IO[bytes], ranged)  # a binary file object, as readers expect
        family = _family(fh, name=stored.name)
        if family in ("nd2", "tiff"):
            try:
                return _microscopy(fh, name=stored.name)
            except WholeSlideImage:
                family = "slide"
    with stored_path(objects, stored.key, stored.name) as path:
        if family == "czi":
            return _microscopy(path, name=stored.name)
        return _slide(path)


def describe_path(path: Path, *, name: str | None = None) -> MetadataResult:
    """Metadata of the file at `path` (`name` is what messages and ``base_name`` use)."""
    name = name or path.name
    with open(path, "rb") as fh:
        family = _family(fh, name=name)
        if family in ("nd2", "tiff"):
            try:
                return _microscopy(fh, name=name)
            except WholeSlideImage:
                family = "slide"
    if family == "czi":
        return _microscopy(path, name=name)
    return _slide(path)


def _slide(path: Path) -> MetadataResult:
    return MetadataResult(kind="slide", metadata=describe_slide(path))


def describe_slide(path: Path) -> dict[str, Any]:
    """A whole-slide image's metadata (OpenSlide), as JSON.

    The one place the ``metadata`` capability meets slides: this is where a ``slides``
    record is to be made from the same reading.
    """
    from functions.slides.info import read_slide_info

    return read_slide_info(path).model_dump(mode="json")


def _family(fh: IO[bytes], *, name: str) -> str:
    """What the leading bytes are: "nd2", "czi", "tiff" (a slide or a stack: the TIFF
    reader tells, see `_microscopy`) or "slide" (DICOM); UnsupportedFile else."""
    fh.seek(0)
    family = family_of(fh.read(HEAD_BYTES))
    if family in ("nd2", "czi", "tiff"):
        return family
    if family == "dicom":
        return "slide"
    raise UnsupportedFile(
        f"{name} is neither a microscopy file (ND2, CZI, TIFF) nor a "
        "whole-slide image (unrecognised content)"
    )


def _microscopy(source: Path | IO[bytes], *, name: str) -> MetadataResult:
    """A microscopy file's metadata; WholeSlideImage for a slide TIFF (told apart in the
    same parse of its directories)."""
    from functions.microscopy.readers import read_metadata

    meta = read_metadata(source, name=name, microscopy_only=True)
    if meta.file_type == "czi":  # the CZI reader names files by their path only
        meta = meta.model_copy(update={"base_name": Path(name).stem})
    return MetadataResult(
        kind="microscopy", metadata=meta.model_dump(mode="json") | {"file_path": None}
    )
