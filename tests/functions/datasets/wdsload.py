"""Reading shards back with the `webdataset` package, as a training script would (its
tar expander, key grouping, decoders and tuples), over streams this helper opens and
closes (webdataset's own URL opener leaves local files open, which pytest refuses)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander


def load(paths: Sequence[Path], *fields: str, decode: Any = "rgb8") -> list[tuple[Any, ...]]:
    """Every sample of the shards as a tuple of `fields`, decoded (numpy images)."""
    with contextlib.ExitStack() as stack:
        sources = [{"url": str(p), "stream": stack.enter_context(p.open("rb"))} for p in paths]
        samples = group_by_keys(tar_file_expander(iter(sources)))
        decoded = wds.decode(*(decode if isinstance(decode, list) else [decode]))(samples)
        return list(wds.to_tuple(*fields)(decoded))
