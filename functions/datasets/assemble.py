"""A build's parts (one tar per source) assembled into shards per split
(`<split>-shard-000000.tar`, ... of `shard_size` samples or `shard_bytes` at most), a
manifest (one row per sample) and a summary (counts per split and class)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import JobCancelled
from functions.datasets.params import OutputSpec, Source
from functions.datasets.plan import SPLITS
from functions.datasets.shards import TarSink, read_samples

MANIFEST_COLUMNS = (
    "split", "shard", "key", "source_file_id", "source_name", "x", "y", "fov", "cell",
    "frame", "time", "label", "objects", "counts",
)  # fmt: skip


@dataclass
class Assembled:
    shards: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _row(split: str, shard: str, meta: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = meta.get("counts") or {}
    label = max(sorted(counts), key=lambda c: counts[c]) if counts else None
    return {
        "split": split,
        "shard": shard,
        "key": meta["key"],
        "source_file_id": meta["source_file_id"],
        "source_name": meta["source_name"],
        "x": float(meta["x"]),
        "y": float(meta["y"]),
        "fov": meta.get("fov"),
        "cell": meta.get("cell"),
        "frame": meta.get("frame"),
        "time": meta.get("time"),
        "label": label,
        "objects": sum(counts.values()) if "counts" in meta else None,
        "counts": json.dumps(counts, sort_keys=True) if "counts" in meta else None,
    }


def assemble(
    parts: list[tuple[Source, Path]],
    output: OutputSpec,
    out_dir: Path,
    *,
    on_shard: Callable[[Path], None],
    cancelled: Callable[[], bool] = lambda: False,
) -> Assembled:
    """Copy the parts' samples into shards per split, in split then source order,
    calling `on_shard` with each shard once it is complete."""
    done = Assembled()
    summary: dict[str, Any] = {"samples": 0, "splits": {}, "classes": {}}
    all_classes: Counter[str] = Counter()
    for split in SPLITS:
        mine = [(s, p) for s, p in parts if s.split == split]
        stats: dict[str, Any] = {"sources": len(mine), "samples": 0, "shards": 0}
        classes: Counter[str] = Counter()
        sink: TarSink | None = None
        name = ""
        for _, path in mine:
            for key, members in read_samples(path):
                if sink is not None and (
                    sink.samples >= output.shard_size
                    or (output.shard_bytes and sink.bytes >= output.shard_bytes)
                ):
                    sink.close()
                    on_shard(out_dir / name)
                    sink = None
                if sink is None:
                    if cancelled():
                        raise JobCancelled()
                    name = f"{split}-shard-{stats['shards']:06d}.tar"
                    sink, stats["shards"] = TarSink(out_dir / name), stats["shards"] + 1
                    done.shards.append(out_dir / name)
                sink.write(key, members)
                meta = json.loads(members["json"])
                classes.update(meta.get("counts") or {})
                done.rows.append(_row(split, name, meta))
                stats["samples"] += 1
        if sink is not None:
            sink.close()
            on_shard(out_dir / name)
        stats["classes"] = dict(sorted(classes.items()))
        summary["splits"][split] = stats
        summary["samples"] += stats["samples"]
        all_classes.update(classes)
    summary["classes"] = dict(sorted(all_classes.items()))
    done.summary = summary
    return done


def write_manifest(rows: list[dict[str, Any]], stem: Path) -> tuple[Path, Path]:
    """The manifest as `<stem>.csv` and `<stem>.parquet`."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("split", pa.string()), ("shard", pa.string()), ("key", pa.string()),
            ("source_file_id", pa.string()), ("source_name", pa.string()),
            ("x", pa.float64()), ("y", pa.float64()), ("fov", pa.int32()),
            ("cell", pa.int64()), ("frame", pa.int32()), ("time", pa.float64()),
            ("label", pa.string()), ("objects", pa.int64()), ("counts", pa.string()),
        ]
    )  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=schema)
    csv_path, pq_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, pq_path, compression="zstd")
    return csv_path, pq_path
