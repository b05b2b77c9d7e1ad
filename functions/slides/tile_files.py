"""Rendered tiles shared by every web process of a server: files under the data directory.

Each web process keeps its own in-memory tile cache, so with several processes a tile
rendered by one was rendered again by another: warm tiles came out at a fraction of one
process's rate. This cache is one directory per slide, one file per tile, that every
process reads and writes:

- a file holds the tile's ETag (one line) and then its bytes; it is written to a
  temporary name and renamed into place, so a reader sees a whole tile or none;
- the directory names the renderer version and the tile settings, so a server started
  with other settings never reads tiles made with the old ones;
- `evict(slide)` removes the slide's directory (a deleted slide); a tile a process was
  rendering at that moment may land afterwards, it is then never asked for (the slide's
  record is gone) and goes with the pruning;
- the whole cache holds at most `max_bytes`: once a process has written an eighth of the
  budget since it last looked, a background thread sums the files and removes the
  oldest (by modification time) until three quarters of the budget are left.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from common.objects import fsutil

log = logging.getLogger("aperture.tiles")

#: An ETag is '"' + 32 hex digits + '"'.
ETAG_LENGTH = 34


class TileFiles:
    """Tiles as files under `root` (one budget for every process sharing it)."""

    def __init__(self, root: Path, max_bytes: int, *, prune_every: int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        #: bytes this process writes between two prunings
        self.prune_every = max_bytes // 8 if prune_every is None else prune_every
        self._written = 0
        self._lock = threading.Lock()
        self._pruning = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"TileFiles({str(self.root)!r}, {self.max_bytes} bytes)"

    def _path(self, slide_id: str, level: int, col: int, row: int, fmt: str) -> Path:
        return self.root / slide_id / str(level) / f"{col}_{row}.{fmt}"

    def get(
        self, slide_id: str, level: int, col: int, row: int, fmt: str
    ) -> tuple[bytes, str] | None:
        """(content, etag) of a stored tile, or None."""
        if self.max_bytes == 0:
            return None
        try:
            data = self._path(slide_id, level, col, row, fmt).read_bytes()
        except OSError:
            self.misses += 1
            return None
        if len(data) <= ETAG_LENGTH or data[ETAG_LENGTH : ETAG_LENGTH + 1] != b"\n":
            self.misses += 1  # not one of ours: never served
            return None
        self.hits += 1
        return data[ETAG_LENGTH + 1 :], data[:ETAG_LENGTH].decode("ascii")

    def put(
        self, slide_id: str, level: int, col: int, row: int, fmt: str, content: bytes, etag: str
    ) -> None:
        """Store a tile; a full disk or any other OSError only means it is not kept."""
        if self.max_bytes == 0 or len(etag) != ETAG_LENGTH:
            return
        path = self._path(slide_id, level, col, row, fmt)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as fh:
                fh.write(etag.encode("ascii") + b"\n" + content)
            os.replace(temporary, path)
        except OSError as error:
            log.debug("tile not kept on disk: %s", error)
            temporary.unlink(missing_ok=True)
            return
        with self._lock:
            self._written += len(content) + ETAG_LENGTH + 1
            due = self._written > self.prune_every
            if due:
                self._written = 0
        if due:
            threading.Thread(target=self.prune, name="tile-files-prune", daemon=True).start()

    def evict(self, slide_id: str) -> None:
        """Forget every tile of a slide (deleted or replaced)."""
        shutil.rmtree(self.root / slide_id, ignore_errors=True)

    def prune(self) -> int:
        """Remove the oldest tiles while the cache holds more than `max_bytes` (down to
        three quarters of it); the bytes removed. One pruning at a time per process;
        processes pruning at once only find some files gone."""
        if not self._pruning.acquire(blocking=False):
            return 0
        try:
            files = list(_files(self.root))
            if sum(size for _, size, _ in files) <= self.max_bytes:
                return 0
            return fsutil.remove_oldest(files, down_to=self.max_bytes * 3 // 4)
        finally:
            self._pruning.release()


def _files(root: Path) -> Iterator[tuple[float, int, str]]:
    """(mtime, size, path) of every file under root, skipping what vanishes meanwhile."""
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    yield info.st_mtime, info.st_size, entry.path
            except OSError:
                continue
