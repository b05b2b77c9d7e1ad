"""`Content-Disposition: attachment` values that survive any filename (RFC 6266 / 5987).

Used for presigned S3 GETs (`ResponseContentDisposition`) and by the web route that
serves the directory backend's signed URLs, so both give browsers the same name.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def _ascii_fallback(filename: str) -> str:
    """An ASCII stand-in for old clients: accents dropped, anything unsafe replaced."""
    folded = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    safe = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in folded)
    return safe.strip() or "download"


def content_disposition(filename: str) -> str:
    """`attachment; filename="..."` plus `filename*=UTF-8''...` when the name is not ASCII.

    Control characters (CR/LF in particular) never reach the header, so a filename
    cannot inject headers.
    """
    cleaned = "".join(c for c in filename if ord(c) >= 0x20 and ord(c) != 0x7F)
    cleaned = cleaned.replace("/", "_").replace("\\", "_").strip() or "download"
    fallback = _ascii_fallback(cleaned)
    value = f'attachment; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value
