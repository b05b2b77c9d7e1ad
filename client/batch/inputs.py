"""What a batch runs over: `SPEC` is a glob (`'data/*.nd2'`), a text file listing paths
(one a line; relative ones are relative to the list's folder; `#` starts a comment), or
`dataset:<id>` (the files of a dataset already on the server)."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from client.api import AsyncClient
from client.downloads import local_name

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Input:
    key: str
    name: str
    path: str | None = None
    file_id: str | None = None


async def resolve(spec: str, client: AsyncClient) -> list[Input]:
    if spec.startswith("dataset:"):
        files = await client.dataset_files(spec.removeprefix("dataset:"))
        return _named([(f"file:{f.id}", f.name, None, f.id) for f in files])
    if GLOB_CHARS & set(spec):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        paths = [p for p in paths if p.is_file()]
        if not paths:
            raise ValueError(f"no files match {spec!r}")
    else:
        listing = Path(spec)
        if not listing.is_file():
            raise ValueError(f"{spec!r} is neither a glob, a list of paths, nor dataset:<id>")
        paths = _listed(listing)
    return _named([(str(p.resolve()), p.name, str(p.resolve()), None) for p in paths])


def _listed(listing: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else listing.parent / path
        if not path.is_file():
            raise ValueError(f"{listing}:{number}: no file {text!r}")
        paths.append(path)
    return paths


def _named(rows: list[tuple[str, str, str | None, str | None]]) -> list[Input]:
    """One input per distinct key; names made unique (they become output folders)."""
    taken: set[str] = set()
    inputs = []
    for key, name, path, file_id in dict.fromkeys(rows):
        base = candidate = local_name(name)
        n = 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        inputs.append(Input(key, candidate, path, file_id))
    return inputs
