"""Safe display names for stored files (a name is never trusted as a path)."""

from __future__ import annotations

import unicodedata

from common.errors import InvalidInput

MAX_NAME_BYTES = 255


def safe_name(name: str) -> str:
    """Validate a file name given by a client and return it normalised (NFC).

    Refuses rather than rewrites: empty names, path separators, `.`/`..`, control
    characters (NUL included) and names over 255 UTF-8 bytes get a clear error.
    """
    if not isinstance(name, str):
        raise InvalidInput("the file name must be a string")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidInput("the file name is empty")
    if name in {".", ".."}:
        raise InvalidInput(f"{name!r} is not a file name")
    if "/" in name or "\\" in name:
        raise InvalidInput("the file name must not contain '/' or '\\'")
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in name):
        raise InvalidInput("the file name must not contain control characters")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidInput(f"the file name is longer than {MAX_NAME_BYTES} bytes")
    return name
