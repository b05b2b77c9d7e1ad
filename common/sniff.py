"""What an uploaded file really is: its type from magic bytes, checked against its
extension and the allow-list, plus a cheap structural check that catches truncated files.

The bytes decide the family and, for TIFFs, slide or microscopy, by the one rule in
:mod:`common.filekinds`; the extension only says what the upload may be. Nothing here
decodes pixels; TIFF-family files are checked by walking their directories and making
sure every strip or tile lies inside the file.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import IO

from common.errors import UnsupportedFile
from common.filekinds import family_of, tiff_kind


@dataclass(frozen=True)
class FileType:
    family: str  # tiff | nd2 | czi | dicom | parquet | text | png | jpeg | onnx
    kinds: tuple[str, ...]  # what the extension may turn out to be


#: Accepted extensions (longest match first) -> the family their bytes must have.
EXTENSIONS: dict[str, FileType] = {
    ".ome.tiff": FileType("tiff", ("microscopy",)),
    ".ome.tif": FileType("tiff", ("microscopy",)),
    ".tiff": FileType("tiff", ("microscopy", "slide")),
    ".tif": FileType("tiff", ("microscopy", "slide")),
    ".btf": FileType("tiff", ("microscopy", "slide")),
    ".svs": FileType("tiff", ("slide",)),
    ".ndpi": FileType("tiff", ("slide",)),
    ".scn": FileType("tiff", ("slide",)),
    ".bif": FileType("tiff", ("slide",)),
    ".dcm": FileType("dicom", ("slide",)),
    ".nd2": FileType("nd2", ("microscopy",)),
    ".czi": FileType("czi", ("microscopy",)),
    ".csv": FileType("text", ("table",)),
    ".tsv": FileType("text", ("table",)),
    ".txt": FileType("text", ("other",)),
    ".json": FileType("text", ("other",)),
    ".parquet": FileType("parquet", ("table",)),
    ".onnx": FileType("onnx", ("model",)),
    ".png": FileType("png", ("image",)),
    ".jpg": FileType("jpeg", ("image",)),
    ".jpeg": FileType("jpeg", ("image",)),
}

_LONGEST_FIRST = tuple(sorted(EXTENSIONS, key=len, reverse=True))


def extension_of(name: str) -> str:
    lower = name.lower()
    for ext in _LONGEST_FIRST:
        if lower.endswith(ext):
            return ext
    return lower[lower.rfind(".") :] if "." in lower else ""


def check_name(name: str) -> FileType:
    """The expected type for an upload's name, before any byte arrives (415 otherwise)."""
    ext = extension_of(name)
    if ext not in EXTENSIONS:
        accepted = ", ".join(sorted(EXTENSIONS))
        raise UnsupportedFile(
            f"files of type {ext or '(no extension)'!r} are not accepted; accepted: {accepted}"
        )
    return EXTENSIONS[ext]


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut at the end is fine
        return error.start >= len(head) - 3
    return True


def identify(name: str, stream: IO[bytes], size: int) -> str:
    """The kind of a stored file (microscopy, slide, table, model, image, other), or
    UnsupportedFile saying how its content disagrees with its name."""
    expected = check_name(name)
    if size == 0 and expected.family != "text":
        raise UnsupportedFile(f"{name!r} is an empty file (0 bytes)")
    stream.seek(0)
    head = stream.read(4096)
    family = family_of(head)
    if expected.family == "text":
        family = "text" if family is None and _is_text(head) else family
    elif expected.family == "onnx":
        family = "onnx" if head[:1] == b"\x08" else family  # protobuf field 1: ir_version
    if family != expected.family:
        found = family or ("text" if _is_text(head) else "unrecognised binary data")
        raise UnsupportedFile(
            f"{name!r} is named like a {expected.family} file but its content is {found}"
        )
    if family == "tiff":
        return _tiff_kind(name, stream, size, expected)
    if family == "parquet":
        _check_parquet(name, stream, size)
    return expected.kinds[0]


class _ThreadErrors(logging.Handler):
    """Collects tifffile's log errors from this thread: tifffile logs (and does not raise)
    when a page directory lies beyond the end of a truncated file."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _tiff_kind(name: str, stream: IO[bytes], size: int, expected: FileType) -> str:
    import tifffile

    stream.seek(0)
    errors = _ThreadErrors()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addHandler(errors)
    compressions: set[int] = set()
    try:
        with tifffile.TiffFile(stream, name=name) as tif:
            pages = tif.pages
            pages.cache = False
            for index, page in enumerate(pages):
                if index >= 512:  # enough to find a truncation in practice; stays cheap
                    break
                _check_segments(name, page, size)
                compressions.add(int(getattr(page, "compression", 1)))
            kind = tiff_kind(tif)
    except UnsupportedFile:
        raise
    except Exception as error:
        raise UnsupportedFile(corrupt_tiff(name, str(error))) from None
    finally:
        tiff_log.removeHandler(errors)
    if errors.messages:
        raise UnsupportedFile(corrupt_tiff(name, errors.messages[0]))
    if kind == "microscopy":  # read by tifffile (slides by OpenSlide, which knows more)
        _check_codecs(name, compressions)
    if kind not in expected.kinds:
        raise UnsupportedFile(
            f"{name!r} is named like a {' or '.join(expected.kinds)} file but its content "
            f"is a {'whole-slide image' if kind == 'slide' else 'microscopy image'}"
        )
    return kind


def _check_segments(name: str, page: object, size: int) -> None:
    offsets = getattr(page, "dataoffsets", ()) or ()
    counts = getattr(page, "databytecounts", ()) or ()
    for offset, count in zip(offsets, counts, strict=False):
        if offset + count > size:
            raise UnsupportedFile(
                corrupt_tiff(
                    name, f"image data runs to byte {offset + count} of a {size}-byte file"
                )
            )


def _check_codecs(name: str, compressions: set[int]) -> None:
    """Refuse a microscopy TIFF whose compression tifffile cannot decode: its metadata
    would read, and every job on it fail."""
    import tifffile

    for compression in sorted(compressions):
        try:
            tifffile.TIFF.DECOMPRESSORS[compression]
        except Exception:  # KeyError for unknown or unavailable codecs
            raise UnsupportedFile(
                f"{name!r} uses TIFF compression {compression}, which cannot be decoded"
            ) from None


_RAISED = re.compile(r"raised \w+\((['\"])(?P<inner>.*)\1\)\s*$")
_TAG = re.compile(r"<tifffile\.TiffTag (\d+) @\d+>")
_ANGLED = re.compile(r"<[^<>]*>")


def corrupt_tiff(name: str, reason: str) -> str:
    """The message for a TIFF whose structure is broken: "truncated or corrupt TIFF"
    and a short reason, without tifffile's internals (class names, reprs, offsets of
    its own objects)."""
    raised = _RAISED.search(reason)
    if raised:  # "<TiffTag.fromfile> raised TiffFileError('...')": keep the inner message
        reason = raised.group("inner")
    reason = _ANGLED.sub("", _TAG.sub(r"tag \1:", reason))
    reason = " ".join(reason.split()).strip(" :;,") or "its structure cannot be read"
    return f"{name!r}: truncated or corrupt TIFF: {reason}"


def _check_parquet(name: str, stream: IO[bytes], size: int) -> None:
    if size < 12:
        raise UnsupportedFile(f"{name!r} is too short to be a Parquet file")
    stream.seek(size - 4)
    if stream.read(4) != b"PAR1":
        raise UnsupportedFile(f"{name!r} is truncated: its Parquet footer is missing")
