"""Walk a directory tree yielding keys in S3's order (lexicographic by UTF-8 bytes).

Sorting each directory's entries with a directory's name taken as `name + "/"`
yields the global key order directly, because every key below a directory starts
with that string. That lets a page start after any key without reading the whole
tree: subtrees that lie entirely before `start_after`, or outside the prefix, are
skipped unopened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk_keys(root: Path, prefix: str = "", *, start_after: str | None = None) -> Iterator[str]:
    """Keys of regular files under `root` starting with `prefix`, after `start_after`.

    Entries at the root whose names start with `.` are the store's internal areas and
    are never listed; symlinks are not followed.
    """
    yield from _walk(root, "", prefix, start_after)


def _entries(directory: Path, rel: str) -> list[tuple[str, bool]]:
    """(name as sorted, is_dir) for the directory's files and subdirectories."""
    try:
        scanned = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries = []
    for entry in scanned:
        if not rel and entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            entries.append((entry.name + "/", True))
        elif entry.is_file(follow_symlinks=False):
            entries.append((entry.name, False))
    # Python orders str by code point, which is the same order as UTF-8 bytes.
    entries.sort()
    return entries


def _walk(directory: Path, rel: str, prefix: str, start_after: str | None) -> Iterator[str]:
    for name, is_dir in _entries(directory, rel):
        full = rel + name
        if is_dir:
            # Descend only if some key below could match the prefix and come after
            # start_after (keys below all start with `full`).
            if not (full.startswith(prefix) or prefix.startswith(full)):
                continue
            if start_after is not None and full < start_after and not start_after.startswith(full):
                continue
            yield from _walk(directory / name[:-1], full, prefix, start_after)
        elif full.startswith(prefix) and (start_after is None or full > start_after):
            yield full
