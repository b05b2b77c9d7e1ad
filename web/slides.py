"""What the slide and viewer routes share: one tile service per app (built in the
lifespan, closed at shutdown), slide ownership, local slide files and pre-generated
pyramids."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from common.errors import NotFound
from common.runtime import Runtime
from common.slides import LocalSlideFiles, SlideRecord
from functions.slides.capability import dzi_prefix, pyramid_dzi_key
from functions.slides.dzi import DziDescriptor
from functions.slides.service import SlideTiles, settings_tag
from functions.slides.tile_files import TileFiles
from web.deps import CurrentUser, visible_to

#: Tiles need a signed-in user, so only their browser may keep them (`private`); under a
#: given URL a tile never changes (the ETag covers the tile settings), so it never asks
#: twice.
TILE_CACHE_CONTROL = "private, max-age=31536000, immutable"

#: How long a slide record is reused by tile requests. A slide deleted or renamed through
#: this process is forgotten at once; another process sees the change within this time.
RECORD_TTL_S = 2.0


class Unknown:
    """Not looked up (or no longer fresh)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


class SlideService:
    """The app's slides: records, the tile service and local copies of slide files."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.records = runtime.slides
        settings = runtime.settings.tiles
        # every web process of the server reads and writes the same rendered tiles
        shared = TileFiles(
            Path(runtime.settings.data_dir) / "cache" / "tiles" / settings_tag(settings),
            settings.shared_cache_bytes,
        )
        self.tiles = SlideTiles(settings, files=shared)
        self.local = LocalSlideFiles(
            runtime.objects,
            Path(runtime.settings.data_dir) / "cache" / "slides",
            self.tiles.settings.local_cache_bytes,
        )
        self._pyramids: dict[uuid.UUID, tuple[float, DziDescriptor | None]] = {}
        self._paths: dict[uuid.UUID, Path] = {}
        self._records: dict[uuid.UUID, tuple[float, SlideRecord]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SlideService({self.tiles!r}, {self.local!r})"

    def close(self) -> None:
        """Close the open slides and drop what is cached (at shutdown)."""
        self.tiles.close()
        with self._lock:
            self._pyramids.clear()
            self._paths.clear()
            self._records.clear()

    def record(self, slide_id: uuid.UUID) -> SlideRecord:
        """The slide's record (NotFound if none); remembered for RECORD_TTL_S, so a
        viewer's burst of tile requests costs one lookup."""
        record = self.fresh_record(slide_id)
        if record is None:
            record = self.records.get(slide_id)
            with self._lock:
                self._records[slide_id] = (time.monotonic(), record)
        return record

    def fresh_record(self, slide_id: uuid.UUID) -> SlideRecord | None:
        cached = self._records.get(slide_id)
        if cached is None or time.monotonic() - cached[0] >= RECORD_TTL_S:
            return None
        return cached[1]

    def path(self, slide: SlideRecord) -> Path:
        """A local file with the slide's bytes (NotFound once its file is deleted)."""
        path = self._paths.get(slide.id)
        if path is None or not path.is_file():
            path = self.local.path(self.runtime.files.get(slide.file_id))
            with self._lock:
                self._paths[slide.id] = path
        return path

    def known_path(self, slide_id: uuid.UUID) -> Path | None:
        """The slide's local file if this process has looked it up (no I/O)."""
        return self._paths.get(slide_id)

    async def apath(self, slide: SlideRecord) -> Path:
        path = self._paths.get(slide.id)
        return path if path is not None else await run_in_threadpool(self.path, slide)

    def known_pyramid(self, slide_id: uuid.UUID) -> DziDescriptor | Unknown | None:
        """`pyramid(slide_id)` while the last answer is fresh, else UNKNOWN (no I/O)."""
        cached = self._pyramids.get(slide_id)
        if cached is None or time.monotonic() - cached[0] >= self.tiles.settings.pyramid_check_s:
            return UNKNOWN
        return cached[1]

    async def apyramid(self, slide_id: uuid.UUID) -> DziDescriptor | None:
        known = self.known_pyramid(slide_id)
        if not isinstance(known, Unknown):
            return known
        return await run_in_threadpool(self.pyramid, slide_id)

    def pyramid(self, slide_id: uuid.UUID) -> DziDescriptor | None:
        """The descriptor of the slide's finished pre-generated pyramid if it has one
        made with the live tile settings (otherwise tiles are rendered)."""
        known = self.known_pyramid(slide_id)
        if not isinstance(known, Unknown):
            return known
        now = time.monotonic()
        found = self._read_pyramid(slide_id)
        with self._lock:
            self._pyramids[slide_id] = (now, found)
        return found

    def _read_pyramid(self, slide_id: uuid.UUID) -> DziDescriptor | None:
        objects = self.runtime.objects
        try:
            descriptor = DziDescriptor.from_xml(objects.get_bytes(pyramid_dzi_key(slide_id)))
        except (NotFound, ValueError):
            return None
        s = self.tiles.settings
        if (descriptor.tile_size, descriptor.overlap, descriptor.format) != (
            s.tile_size,
            s.overlap,
            s.format,
        ) or s.limit_bounds:
            return None
        return descriptor

    def delete(self, slide: SlideRecord) -> None:
        """Delete the slide's record and pre-generated pyramid (its file stays), and
        forget it."""
        self.records.delete([slide.id])
        self.forget(slide)
        self.runtime.objects.delete_prefix(dzi_prefix(slide.id) + "/")

    def forget(self, slide: SlideRecord) -> None:
        """Drop everything held for a deleted slide: handles, cached tiles, local copy."""
        self.tiles.evict(str(slide.id))
        self.local.evict(slide.file_id)
        with self._lock:
            self._pyramids.pop(slide.id, None)
            self._paths.pop(slide.id, None)
            self._records.pop(slide.id, None)


async def get_slide_service(request: Request) -> SlideService:
    """The app's one SlideService (open handles and caches live in it), built in the
    lifespan."""
    return request.app.state.aperture.slides  # type: ignore[no-any-return]


SlideServiceDep = Annotated[SlideService, Depends(get_slide_service)]


def owned_slide(slide_id: uuid.UUID, service: SlideServiceDep, user: CurrentUser) -> SlideRecord:
    """The slide if the caller may see it; another owner's slide is 404."""
    return visible_to(user, service.records.get(slide_id), "slide")


async def viewed_slide(
    slide_id: uuid.UUID, service: SlideServiceDep, user: CurrentUser
) -> SlideRecord:
    """As `owned_slide`, for pixel routes: the record may be up to RECORD_TTL_S old."""
    slide = service.fresh_record(slide_id)
    if slide is None:
        slide = await run_in_threadpool(service.record, slide_id)
    return visible_to(user, slide, "slide")


OwnedSlide = Annotated[SlideRecord, Depends(owned_slide)]
ViewedSlide = Annotated[SlideRecord, Depends(viewed_slide)]
