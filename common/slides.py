"""Slide records and the local copies of slide files that OpenSlide reads.

`Slides` is the `slides` table: made (or refreshed) by the `metadata` job from what
OpenSlide reports, listed, renamed and deleted by the web layer. `LocalSlideFiles` turns
a stored file into a path: the directory store's own file, or a copy in a bounded cache
under the data directory for stores without local files (S3).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from common.capabilities import StoredFile
from common.errors import InvalidInput, NotFound
from common.objects import fsutil
from common.objects.base import ObjectStore
from common.records import File, transaction
from common.records.models import Slide
from common.records.types import utcnow


class SlideRecord(BaseModel):
    """A `slides` row as the rest of the code sees it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    file_id: uuid.UUID
    dataset_id: uuid.UUID | None
    name: str
    vendor: str | None
    width: int
    height: int
    level_count: int
    levels: list[dict[str, Any]]
    tile_width: int | None
    tile_height: int | None
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    bounds: dict[str, Any] | None
    background_color: str | None
    quickhash: str | None
    properties: dict[str, Any]
    associated: list[dict[str, Any]]
    prediction_count: int
    source_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SlideFilter:
    owner_id: uuid.UUID | None = None
    all_owners: bool = False  # admins
    file_id: uuid.UUID | None = None
    dataset_id: uuid.UUID | None = None
    vendor: str | None = None
    name: str | None = None  # substring, case-insensitive
    created_after: datetime | None = None
    created_before: datetime | None = None


def _columns(info: dict[str, Any]) -> dict[str, Any]:
    """Slide columns from `functions.slides.info.SlideInfo` as JSON."""
    levels = [
        {"width": int(w), "height": int(h), "downsample": float(d)}
        for (w, h), d in zip(info["level_dimensions"], info["level_downsamples"], strict=True)
    ]
    return {
        "vendor": info.get("vendor"),
        "width": int(info["width"]),
        "height": int(info["height"]),
        "level_count": int(info["level_count"]),
        "levels": levels,
        "tile_width": info.get("tile_width"),
        "tile_height": info.get("tile_height"),
        "mpp_x": info.get("mpp_x"),
        "mpp_y": info.get("mpp_y"),
        "objective_power": info.get("objective_power"),
        "bounds": info.get("bounds"),
        "background_color": info.get("background_color"),
        "quickhash": info.get("quickhash"),
        "properties": dict(info.get("properties", {})),
        "associated": list(info.get("associated_images", [])),
    }


class Slides:
    """The `slides` table. Reads hide slides whose file was deleted."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def __repr__(self) -> str:
        return "Slides()"

    def record(
        self,
        stored: StoredFile,
        info: dict[str, Any],
        *,
        dataset_id: uuid.UUID | None = None,
        source_job_id: uuid.UUID | None = None,
    ) -> SlideRecord:
        """Make the slide of `stored` from its metadata (`SlideInfo` as JSON), or refresh
        it if the file has one already (a retried or repeated metadata job)."""
        now = utcnow()
        columns = _columns(info) | {"source_job_id": source_job_id, "updated_at": now}
        with transaction(self.db) as session:
            row = session.scalars(select(Slide).where(Slide.file_id == stored.id)).first()
            if row is None:
                if dataset_id is None:
                    dataset_id = session.scalar(select(File.dataset_id).where(File.id == stored.id))
                row = Slide(
                    id=uuid.uuid4(),
                    owner_id=stored.owner_id,
                    file_id=stored.id,
                    dataset_id=dataset_id,
                    name=stored.name,
                    prediction_count=0,
                    created_at=now,
                    **columns,
                )
                session.add(row)
            else:
                for name, value in columns.items():
                    setattr(row, name, value)
            session.flush()
            return SlideRecord.model_validate(row)

    def get(self, slide_id: uuid.UUID) -> SlideRecord:
        """The slide (NotFound if there is none, or its file was deleted)."""
        with self.db() as session:
            row = session.scalars(_visible(select(Slide)).where(Slide.id == slide_id)).first()
            if row is None:
                raise NotFound(f"no slide with id {slide_id}")
            return SlideRecord.model_validate(row)

    def find(
        self, f: SlideFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[SlideRecord], int]:
        """Slides matching `f`, newest first, and how many match in all."""
        query = _filtered(_visible(select(Slide)), f)
        with self.db() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(Slide.created_at.desc(), Slide.id).limit(limit).offset(offset)
            )
            return [SlideRecord.model_validate(r) for r in rows], int(total)

    def rename(self, slide_id: uuid.UUID, name: str) -> SlideRecord:
        name = name.strip()
        if not name or len(name) > 255 or any(ord(ch) < 32 for ch in name):
            raise InvalidInput("a slide name must be 1 to 255 printable characters")
        with transaction(self.db) as session:
            row = session.get(Slide, slide_id)
            if row is None:
                raise NotFound(f"no slide with id {slide_id}")
            row.name = name
            row.updated_at = utcnow()
            session.flush()
            return SlideRecord.model_validate(row)

    def delete(self, slide_ids: Sequence[uuid.UUID]) -> int:
        """Remove slide records (their files stay); returns how many went."""
        if not slide_ids:
            return 0
        with transaction(self.db) as session:
            result = session.execute(delete(Slide).where(Slide.id.in_(list(slide_ids))))
            return int(getattr(result, "rowcount", 0) or 0)


def _visible(query: Select[tuple[Slide]]) -> Select[tuple[Slide]]:
    return query.join(File, File.id == Slide.file_id).where(File.deleted_at.is_(None))


def _filtered(query: Select[tuple[Slide]], f: SlideFilter) -> Select[tuple[Slide]]:
    if not f.all_owners:
        query = query.where(
            Slide.owner_id == f.owner_id if f.owner_id is not None else Slide.owner_id.is_(None)
        )
    if f.file_id is not None:
        query = query.where(Slide.file_id == f.file_id)
    if f.dataset_id is not None:
        query = query.where(Slide.dataset_id == f.dataset_id)
    if f.vendor is not None:
        query = query.where(Slide.vendor == f.vendor)
    if f.name:
        query = query.where(func.lower(Slide.name).contains(f.name.lower(), autoescape=True))
    if f.created_after is not None:
        query = query.where(Slide.created_at >= f.created_after)
    if f.created_before is not None:
        query = query.where(Slide.created_at < f.created_before)
    return query


class LocalSlideFiles:
    """Local paths of stored slide files, for readers that open files by name.

    The directory store's own file is used in place. For other stores a copy is made
    under `cache_dir/{file_id}/` and kept while the cache holds at most `max_bytes`;
    the least recently used copies go first. A copy an open slide still reads stays
    readable after it is removed (the handle holds the inode).
    """

    def __init__(self, objects: ObjectStore, cache_dir: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.objects = objects
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fetching: dict[uuid.UUID, threading.Lock] = {}
        self.downloads = 0

    def __repr__(self) -> str:
        return f"LocalSlideFiles({str(self.cache_dir)!r}, max_bytes={self.max_bytes})"

    def path(self, stored: StoredFile) -> Path:
        """A local file with the bytes of `stored` (downloaded once if need be)."""
        local = self.objects.local_path(stored.key)
        if local is not None:
            return local
        with self._lock:
            fetching = self._fetching.setdefault(stored.id, threading.Lock())
        with fetching:
            target = self.cache_dir / str(stored.id) / Path(stored.name).name
            if target.is_file() and target.stat().st_size == stored.size:
                os.utime(target)  # most recently used
                return target
            self._download(stored, target)
        self._trim(keep=target)
        return target

    def _download(self, stored: StoredFile, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as out:
                for chunk in self.objects.iter_bytes(stored.key):
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        self.downloads += 1

    def _trim(self, *, keep: Path) -> None:
        """Remove least recently used copies until the cache fits (never `keep`)."""
        with self._lock:
            copies = [
                p for p in self.cache_dir.glob("*/*") if p.is_file() and not p.name.startswith(".")
            ]
            files = [(st.st_mtime, st.st_size, p) for p in copies for st in [p.stat()]]
            fsutil.remove_oldest(files, down_to=self.max_bytes, keep=keep)

    def evict(self, file_id: uuid.UUID) -> None:
        """Drop the local copy of a file (its slide was deleted)."""
        folder = self.cache_dir / str(file_id)
        with self._lock:
            for path in folder.glob("*"):
                path.unlink(missing_ok=True)
            if folder.is_dir():
                folder.rmdir()
