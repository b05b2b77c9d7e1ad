"""Predictions per viewport for the viewer: a task's objects whose box meets a level-0
`bbox`, above a confidence, of some classes, answered from the objects Parquet's
spatial index (only the row groups that meet the box are read). GeoJSON is streamed,
never built in memory; `Accept: application/vnd.apache.parquet` gives Parquet. The
density route gives centroid counts on a grid, for a heat map when zoomed out."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from common.capabilities import StoredFile
from common.errors import Conflict, InvalidInput, NotFound
from common.jobs.status import Status
from common.objects.access import open_stored
from functions.inference.density import MAX_GRID, viewport_density
from functions.inference.outputs import GEOJSON, PARQUET
from functions.inference.query import viewport_geojson, viewport_parquet
from web.deps import CurrentUser, State, visible_to
from web.inference import Records
from web.slides import OwnedSlide

router = APIRouter(prefix="/viewer", tags=["viewer"])

TASK_HEADER = "X-Aperture-Task-Id"
PREDICTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {GEOJSON: {}, PARQUET: {}}, "description": "A FeatureCollection."},
    409: {"description": "The task has not succeeded (yet)."},
}


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """`x0,y0,x1,y1` in level-0 pixels (422 when malformed)."""
    if bbox is None:
        return None
    parts = bbox.split(",")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"bbox must be four numbers x0,y0,x1,y1, got {bbox!r}") from None
    return x0, y0, x1, y1


class ViewportQuery:
    """The query string shared by the predictions routes."""

    def __init__(
        self,
        task_id: Annotated[
            uuid.UUID | None, Query(description="Default: the slide's latest succeeded task.")
        ] = None,
        min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
        bbox: Annotated[
            str | None, Query(max_length=200, description="x0,y0,x1,y1 in level-0 pixels.")
        ] = None,
        classes: Annotated[
            list[str] | None, Query(alias="class", description="Repeat for several classes.")
        ] = None,
    ) -> None:
        self.task_id = task_id
        self.min_confidence = min_confidence
        self.bbox = parse_bbox(bbox)
        self.classes = set(classes) if classes else None

    def __repr__(self) -> str:
        return f"ViewportQuery(task={self.task_id}, bbox={self.bbox})"


Viewport = Annotated[ViewportQuery, Depends()]


def _objects_file(
    state: State, records: Records, user: CurrentUser, slide_id: uuid.UUID, task_id: Any
) -> tuple[uuid.UUID, StoredFile]:
    """The task (named, or the slide's latest succeeded) and its objects Parquet."""
    if task_id is None:
        task = records.latest_succeeded(slide_id)
        if task is None:
            raise NotFound(f"slide {slide_id} has no succeeded inference task")
    else:
        task = visible_to(user, records.task(task_id), "inference task")
        if task.slide_id != slide_id:
            raise NotFound(f"no inference task {task_id} of slide {slide_id}")
    job = state.runtime.jobs.get(task.id)
    if job.status is not Status.succeeded or not job.result:
        raise Conflict(f"task {task.id} is {job.status.value}; predictions exist once it succeeds")
    return task.id, state.runtime.files.get(uuid.UUID(str(job.result["parquet_file_id"])))


def _streamed(stack: contextlib.ExitStack, chunks: Iterator[bytes]) -> Iterator[bytes]:
    with stack:  # the stored file stays open while the answer streams
        yield from chunks


@router.get("/predictions/{slide_id}", responses=PREDICTION_RESPONSES)
def read_predictions(
    slide: OwnedSlide,
    query: Viewport,
    state: State,
    records: Records,
    user: CurrentUser,
    request: Request,
    limit: Annotated[int | None, Query(ge=0, description="Default: every match.")] = None,
) -> Response:
    """A task's objects in a viewport, as a GeoJSON FeatureCollection (or Parquet)."""
    task_id, stored = _objects_file(state, records, user, slide.id, query.task_id)
    options: dict[str, Any] = {
        "bbox": query.bbox,
        "min_confidence": query.min_confidence,
        "classes": query.classes,
        "limit": limit,
        "cache_key": str(stored.id),
    }
    headers = {TASK_HEADER: str(task_id)}
    stack = contextlib.ExitStack()
    with stack:
        source = stack.enter_context(open_stored(state.runtime.objects, stored.key, stored.size))
        if PARQUET in request.headers.get("accept", ""):
            content = viewport_parquet(source, **options)
            return Response(content, media_type=PARQUET, headers=headers)
        chunks = viewport_geojson(source, **options)  # checks the query before any byte
        return StreamingResponse(
            _streamed(stack.pop_all(), chunks), media_type=GEOJSON, headers=headers
        )


@router.get("/predictions/{slide_id}/density")
def read_prediction_density(
    slide: OwnedSlide,
    query: Viewport,
    state: State,
    records: Records,
    user: CurrentUser,
    response: Response,
    grid: Annotated[int, Query(ge=1, le=MAX_GRID, description="Cells on the longer side.")] = 64,
) -> dict[str, Any]:
    """Object centroid counts on a grid over a viewport (a heat map's data)."""
    task_id, stored = _objects_file(state, records, user, slide.id, query.task_id)
    response.headers[TASK_HEADER] = str(task_id)
    with open_stored(state.runtime.objects, stored.key, stored.size) as source:
        return viewport_density(
            source,
            bbox=query.bbox,
            min_confidence=query.min_confidence,
            classes=query.classes,
            grid=grid,
            cache_key=str(stored.id),
        )
