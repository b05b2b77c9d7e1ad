"""A damaged file a user sends is the user's error: the format library's complaint is
logged at info, and the upload check still sees it (and refuses the file)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from common.errors import UnsupportedFile
from common.logs import configure_logging
from common.sniff import identify
from tests.support.fixtures import REAL


@pytest.fixture
def service_logging() -> Iterator[io.StringIO]:
    """The service's logging, its output written to a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("text", "INFO")
    output = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(output)
    try:
        yield output
    finally:
        root.handlers[:], root.level = saved
        logging.getLogger("uvicorn.access").disabled = False


def test_a_damaged_tiff_is_refused_and_logged_at_info(service_logging: io.StringIO) -> None:
    data = (REAL / "boxes.tiff").read_bytes()
    damaged = data[: len(data) - len(data) // 2]
    with pytest.raises(UnsupportedFile, match="truncated or corrupt"):
        identify("boxes.tiff", io.BytesIO(damaged), len(damaged))
    logged = service_logging.getvalue()
    assert "tifffile" in logged and " INFO tifffile " in logged
    assert " ERROR " not in logged
