"""Where an interrupted multipart upload is remembered between runs.

One small JSON file per (server, local path) under the user's state directory holds the
upload's id and part URLs (the API hands them out once). The server's list of stored
parts, not this file, decides what is left to send; the file only says which upload to
ask about. A local file whose size or modification time changed starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("aperture")) / "uploads"


@dataclass(frozen=True)
class PendingUpload:
    server: str
    path: str
    size: int
    mtime_ns: int
    upload_id: str
    part_size: int
    part_count: int
    part_urls: dict[str, str]


class UploadLedger:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_state_dir()

    def __repr__(self) -> str:
        return f"UploadLedger({str(self.directory)!r})"

    def _entry(self, server: str, path: Path) -> Path:
        digest = hashlib.sha256(f"{server}\n{path}".encode()).hexdigest()[:32]
        return self.directory / f"{digest}.json"

    def find(self, server: str, path: Path, size: int, mtime_ns: int) -> PendingUpload | None:
        """The pending upload of this very file (same size and mtime), if any."""
        try:
            data: dict[str, Any] = json.loads(self._entry(server, path).read_text())
            pending = PendingUpload(**data)
        except (OSError, ValueError, TypeError):
            return None
        if (pending.server, pending.path, pending.size, pending.mtime_ns) != (
            server,
            str(path),
            size,
            mtime_ns,
        ):
            return None
        return pending

    def stale(self, server: str, path: Path) -> str | None:
        """The upload id remembered for `path`, whatever file it was for."""
        try:
            return str(json.loads(self._entry(server, path).read_text())["upload_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, pending: PendingUpload) -> None:
        """Written atomically, owner-only (the part URLs are credentials for a day)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self._entry(pending.server, Path(pending.path))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".pending-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(pending), f)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def forget(self, server: str, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._entry(server, path).unlink()
