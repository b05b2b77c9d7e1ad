"""Downloads through the client: a presigned S3 URL (the server's download redirect) is
fetched in parallel byte ranges written at their offsets; the bytes come back exact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from client import ApiKey, Client, fetch
from tests.client.conftest import new_account, start_server
from tests.support.s3 import S3Server, s3_settings_env, unique_bucket

MIB = 1024 * 1024


@pytest.mark.slow
def test_s3_download_in_parallel_ranges_is_exact(
    tmp_path: Path, private_dirs: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pieces, so an 11 MiB file goes in 12 ranges over 4 threads (out of order).
    monkeypatch.setattr(fetch, "PIECE", MIB - 4096)
    monkeypatch.setattr(fetch, "RANGED_MIN", 2 * MIB)
    pieces: list[tuple[int, int]] = []
    real_piece = fetch._piece

    def counting(*args: object) -> int:
        pieces.append(args[3])  # type: ignore[arg-type]
        return real_piece(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fetch, "_piece", counting)
    source = tmp_path / "table.csv"
    source.write_bytes(b"a,b\n" + os.urandom(11 * MIB // 2).hex().encode()[: 11 * MIB - 4 + 77])
    bucket = unique_bucket("client-download")
    s3_server.store(bucket).ensure_bucket()
    env = {**s3_settings_env(s3_server, bucket), "APERTURE_DOWNLOAD_REDIRECT": "true"}
    server = start_server(tmp_path / "data", **env)
    try:
        with Client(server.url, ApiKey(new_account(server.url).api_key)) as aperture:
            stored = aperture.upload(source).file
            back = aperture.download(stored.id, tmp_path / "out" / "back.csv")
    finally:
        server.stop()
    assert back.read_bytes() == source.read_bytes()
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    size = source.stat().st_size
    assert len(pieces) == -(-size // (MIB - 4096)) and sorted(pieces)[-1][1] == size
    assert [p.name for p in back.parent.iterdir()] == ["back.csv"]  # no temporary left
