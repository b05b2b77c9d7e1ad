"""Assembling parts into shards: per split, `shard_size` samples or `shard_bytes` at
most, a manifest row per sample, counts per split and class."""

from __future__ import annotations

import uuid
from pathlib import Path

from functions.datasets.assemble import assemble, write_manifest
from functions.datasets.params import OutputSpec, Source
from functions.datasets.shards import TarSink, json_member, read_samples


def _part(tmp: Path, index: int, split: str, n: int) -> tuple[Source, Path]:
    source = Source(file_id=uuid.uuid4(), name=f"s{index}.svs", kind="slide", split=split)  # type: ignore[arg-type]
    path = tmp / f"part-{index}.tar"
    with TarSink(path) as sink:
        for i in range(n):
            meta = {
                "key": f"s{index}-{i:03d}",
                "source_file_id": str(source.file_id),
                "source_name": source.name,
                "x": i,
                "y": 0,
                "counts": {"a": 1, "b": i % 2},
            }
            sink.write(meta["key"], {"png": bytes(20_000), "json": json_member(meta)})
    return source, path


def test_shards_are_cut_by_samples_or_bytes_per_split(tmp_path: Path) -> None:
    parts = [
        _part(tmp_path, 0, "train", 7),
        _part(tmp_path, 1, "train", 5),
        _part(tmp_path, 2, "test", 3),
    ]
    out = tmp_path / "out"
    out.mkdir()
    shards: list[Path] = []
    done = assemble(
        parts, OutputSpec(shard_size=4, shard_bytes=65_536), out, on_shard=shards.append
    )
    names = [p.name for p in shards]
    # 20 kB images: three samples reach 64 KiB before four do
    assert names == [f"train-shard-{i:06d}.tar" for i in range(4)] + ["test-shard-000000.tar"]
    sizes = [len(list(read_samples(p))) for p in shards]
    assert sizes == [3, 3, 3, 3, 3]
    assert [r["shard"] for r in done.rows] == [
        n for n, k in zip(names, sizes, strict=True) for _ in range(k)
    ]
    assert done.summary["splits"]["train"] == {
        "sources": 2,
        "samples": 12,
        "shards": 4,
        "classes": {"a": 12, "b": 5},
    }
    assert done.summary["splits"]["validation"]["samples"] == 0
    assert done.summary["classes"] == {"a": 15, "b": 6}
    csv_path, pq_path = write_manifest(done.rows, tmp_path / "manifest")
    assert csv_path.read_text().count("\n") == 16  # header and 15 rows
    assert pq_path.stat().st_size > 0
    by_count = OutputSpec(shard_size=5)
    shards.clear()
    assemble(parts, by_count, out, on_shard=shards.append)
    assert [len(list(read_samples(p))) for p in shards] == [5, 5, 2, 3]


def test_ustar_headers_are_tarfiles_own() -> None:
    import tarfile

    from functions.datasets.shards import ustar_header

    for name, size in [("s00001-0000001.png", 12345), ("a.json", 0), ("k" * 120 + ".png", 7)]:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        if len(name) <= 100:
            assert ustar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
