"""Paths on the server's own disk that users may import (local and lab deployments).

A path is allowed only if, with every symlink resolved, it is a regular file under one
of `APERTURE_IMPORT_ROOTS` (also resolved). Anything else is refused with a message
saying why, before a byte is read.

Outside the roots the answer is one and the same, whether the path exists or not and
wherever a symlink leads: a user learns nothing about the server's disk beyond the
roots. A path that is outside them as written is refused without touching the disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.errors import Forbidden, InvalidInput, NotFound


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def resolve_import_path(raw: str, roots: list[Path]) -> Path:
    """The real path behind `raw`, if importing it is allowed."""
    if not roots:
        raise Forbidden(
            "importing files from the server is disabled (APERTURE_IMPORT_ROOTS is empty)"
        )
    if not isinstance(raw, str) or not raw or "\x00" in raw or len(raw) > 4096:
        raise InvalidInput("the path must be a non-empty string without NUL characters")
    if not os.path.isabs(raw):
        raise InvalidInput("the path must be absolute")
    outside = Forbidden(f"{raw} is outside the allowed import roots")
    real_roots = [root.resolve() for root in roots]
    if not _under(Path(os.path.normpath(raw)), [*roots, *real_roots]):
        raise outside
    try:
        real = Path(raw).resolve()  # not strict: a missing file is told apart below
    except (OSError, RuntimeError) as error:  # a symlink loop under the roots
        raise InvalidInput(f"{raw} cannot be resolved: {error.__class__.__name__}") from None
    if not _under(real, real_roots):
        raise outside
    try:
        mode = real.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no file at {raw}") from None
    except OSError as error:  # permission
        raise InvalidInput(f"{raw} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"{raw} is not a regular file")
    return real
