"""Who owns a data directory: one server process at a time, held by a file lock.

Restart recovery marks the jobs an earlier server left running as lost. That is only
true if the earlier server is gone, so only the process holding this lock may do it: a
second `aperture serve` on the same directory is refused before it touches anything.

The lock is `fcntl.flock` on `<data dir>/serve.lock`. The kernel drops it when the
holder exits however it exits (SIGKILL included), so a crashed server never leaves a
stale lock behind; the pid written into the file only names the holder in messages.
Locks are per open file, so this process also remembers the directories it holds: a
second holder inside one process is refused the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

LOCK_NAME = "serve.lock"

_held: dict[Path, DataDirLock] = {}
_guard = threading.Lock()


class DataDirBusy(RuntimeError):
    """Another process holds the data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(
            f"the data directory {data_dir} is in use by another aperture server "
            f"({holder}); stop it first, or give this one its own APERTURE_DATA_DIR"
        )


class DataDirLock:
    """An exclusive lock on a data directory, held until `release` (or process exit)."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"DataDirLock({str(self.data_dir)!r}, held={self._fd is not None})"

    @classmethod
    def acquire(cls, data_dir: Path | str) -> DataDirLock:
        """Take the directory's lock without waiting; DataDirBusy if another holds it.
        Creates the directory and the lock file if need be, and nothing else."""
        path = _key(data_dir)
        with _guard:
            if path in _held:
                raise DataDirBusy(path, f"this process, pid {os.getpid()}")
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise DataDirBusy(path, holder) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            lock = cls(path, fd)
            _held[path] = lock
            return lock

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        with _guard:
            if self._fd is None:
                return
            _held.pop(self.data_dir, None)
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _key(data_dir: Path | str) -> Path:
    return Path(data_dir).resolve()


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
