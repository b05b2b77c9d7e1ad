"""`POST /files` for benchmarks: the file streamed from disk as a multipart body of known
length, so the client neither holds the file in memory nor re-reads it to count."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def multipart_body(
    path: Path, boundary: str, content_type: str = "application/octet-stream"
) -> tuple[Iterator[bytes], int]:
    """The file as form field `file`, streamed from disk, and the body's length."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield tail

    return chunks(), len(head) + path.stat().st_size + len(tail)


def upload(
    client: Any, path: Path, content_type: str = "application/octet-stream"
) -> dict[str, Any]:
    """Upload `path` with an httpx client; the stored file's record."""
    boundary = secrets.token_hex(16)
    body, length = multipart_body(path, boundary, content_type)
    response = client.post(
        "/api/v1/files",
        content=body,
        headers={
            "content-type": f"multipart/form-data; boundary={boundary}",
            "content-length": str(length),
        },
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload failed: {response.status_code} {response.text[:500]}")
    return dict(response.json())
