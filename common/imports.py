"""Paths on the server's own disk that users may import (local and lab deployments).

A path is allowed only if, with every symlink resolved, it is a regular file under one
of `APERTURE_IMPORT_ROOTS` (also resolved). Anything else is refused with a message
saying why, before a byte is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.errors import Forbidden, InvalidInput, NotFound


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
    try:
        real = Path(raw).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no file at {raw}") from None
    except (OSError, RuntimeError) as error:  # permission, symlink loop
        raise InvalidInput(f"the path cannot be resolved: {error}") from None
    allowed = [root.resolve() for root in roots]
    if not any(real.is_relative_to(root) for root in allowed):
        raise Forbidden(
            f"{raw} is outside the allowed import roots"
            + (f" (it resolves to {real})" if str(real) != raw else "")
        )
    if not stat.S_ISREG(real.stat().st_mode):
        raise InvalidInput(f"{raw} is not a regular file")
    return real
