"""Object-key validation, shared by every backend so a key means the same thing everywhere.

A key is a `/`-separated relative path. The rules keep keys portable across S3 and a
filesystem and make it impossible for a key to address anything outside the store:
no absolute paths, no `.`/`..` or empty segments, no backslashes or control
characters, at most 1024 bytes of UTF-8 (S3's own limit). A first segment starting
with `.` is reserved for the directory backend's internal areas (`.meta`, `.uploads`).
"""

from __future__ import annotations

from common.errors import InvalidKey

#: S3 refuses keys longer than this many bytes of UTF-8.
MAX_KEY_BYTES = 1024


def _problem(key: str) -> str | None:
    """What is wrong with `key`, or None when it is acceptable."""
    if not key:
        return "the key is empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "the key contains a NUL or control character"
    if "\\" in key:
        return "the key contains a backslash"
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        return f"the key is longer than {MAX_KEY_BYTES} bytes of UTF-8"
    if key.startswith("/"):
        return "the key is an absolute path"
    segments = key.split("/")
    if "" in segments:
        return "the key has an empty segment ('//' or a trailing '/')"
    if "." in segments or ".." in segments:
        return "the key has a '.' or '..' segment"
    if segments[0].startswith("."):
        return "the key's first segment starts with '.', which is reserved"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in key):
        return "the key is not valid Unicode (lone surrogate)"
    return None


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid object key; raise InvalidKey saying why not."""
    if not isinstance(key, str):
        raise InvalidKey(f"the key must be a string, not {type(key).__name__}")
    problem = _problem(key)
    if problem is not None:
        raise InvalidKey(f"invalid object key {key[:100]!r}: {problem}")
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: `""`, or a key optionally ending in one `/`.

    A prefix is matched as a plain string (like S3), so `users/1/fi` is allowed; it
    only has to be something a valid key could start with.
    """
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix
