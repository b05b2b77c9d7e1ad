"""What a file is, decided once: its format family from its leading bytes, and for a
TIFF whether it is a whole-slide image or a microscopy stack.

Upload checks (:mod:`common.sniff`), the ``metadata`` capability and the microscopy
readers all ask here, so a file is never a slide to one of them and a time-lapse to
another. The content decides, never the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import tifffile

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
ND2_MAGIC = b"\xda\xce\xbe\x0a"
#: ND2 files written as JPEG 2000 (older NIS-Elements) start with the JP2 signature box.
JP2_SIGNATURE = b"jP  \r\n\x87\n"
CZI_MAGIC = b"ZISRAWFILE"
#: Bytes to read for :func:`family_of` (DICOM's magic sits after a 128-byte preamble).
HEAD_BYTES = 132

TiffKind = Literal["slide", "microscopy"]


def family_of(head: bytes) -> str | None:
    """The format family of a file's leading bytes (at least :data:`HEAD_BYTES` of them
    for DICOM): tiff, nd2, czi, dicom, parquet, png or jpeg; None when unrecognised."""
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    if head[:4] == ND2_MAGIC or head[4:12] == JP2_SIGNATURE:
        return "nd2"
    if head[:10] == CZI_MAGIC:
        return "czi"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return None


def tiff_kind(tif: tifffile.TiffFile) -> TiffKind:
    """Whether an open TIFF is a whole-slide image or a microscopy stack.

    Vendor slide TIFFs (SVS, NDPI, SCN, BIF, Philips) are slides; OME and ImageJ files
    are microscopy stacks, pyramidal or not; any other TIFF is a slide when it is a
    tiled pyramid (more than one resolution level), else a microscopy stack.
    """
    if tif.is_svs or tif.is_ndpi or tif.is_scn or tif.is_bif or tif.is_philips:
        return "slide"
    if tif.is_ome or tif.is_imagej:
        return "microscopy"
    tiled = bool(getattr(tif.pages.first, "is_tiled", False))
    levels = len(tif.series[0].levels) if tif.series else 1
    return "slide" if tiled and levels > 1 else "microscopy"
