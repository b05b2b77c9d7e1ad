"""Slides: whole-slide image records (made by the `metadata` job), their properties,
thumbnails and associated images."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from common.errors import NotFound
from common.slides import SlideFilter, SlideRecord
from web.deps import CurrentUser, RequestClient, State
from web.fields import LabelQuery, Limit, Name, Offset, TimestampQuery
from web.http import image_response
from web.inference import forget_slide_tasks
from web.schemas import BulkDelete, BulkDeleted, Page
from web.slides import OwnedSlide, SlideService, SlideServiceDep, ViewedSlide, owned_slide

router = APIRouter(prefix="/slides", tags=["slides"])

SlidePublic = SlideRecord


class SlideUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None


@router.get("")
def read_slides(
    service: SlideServiceDep,
    user: CurrentUser,
    file_id: uuid.UUID | None = None,
    dataset_id: uuid.UUID | None = None,
    vendor: LabelQuery = None,
    name: Annotated[LabelQuery, Query(description="Substring.")] = None,
    created_after: TimestampQuery = None,
    created_before: TimestampQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[SlidePublic]:
    """Slides, newest first, filtered by file, dataset, vendor, name and creation time."""
    f = SlideFilter(
        owner_id=user.id,
        all_owners=user.is_admin,
        file_id=file_id,
        dataset_id=dataset_id,
        vendor=vendor,
        name=name,
        created_after=created_after,
        created_before=created_before,
    )
    items, total = service.records.find(f, limit=limit, offset=offset)
    return Page[SlidePublic](items=items, total=total, limit=limit, offset=offset)


@router.post("/bulk-delete")
def delete_slides(
    body: BulkDelete,
    service: SlideServiceDep,
    user: CurrentUser,
    state: State,
    client: RequestClient,
) -> BulkDeleted:
    """Delete several slides; ids that are not the caller's are reported as not found."""
    mine, missing = [], []
    for slide_id in dict.fromkeys(body.ids):
        try:
            mine.append(owned_slide(slide_id, service, user))
        except NotFound:
            missing.append(slide_id)
    for slide in mine:
        _delete(service, state, slide, user, client)
    return BulkDeleted(deleted=[s.id for s in mine], not_found=missing)


@router.get("/{slide_id}")
def read_slide(slide: OwnedSlide) -> SlidePublic:
    """One slide: levels, tile size, microns per pixel, properties, associated images."""
    return slide


@router.patch("/{slide_id}")
def update_slide(slide: OwnedSlide, body: SlideUpdate, service: SlideServiceDep) -> SlidePublic:
    """Rename a slide (the file keeps its name)."""
    if body.name is None:
        return slide
    return service.records.rename(slide.id, body.name)


@router.delete("/{slide_id}", status_code=204)
def delete_slide(
    slide: OwnedSlide,
    service: SlideServiceDep,
    user: CurrentUser,
    state: State,
    client: RequestClient,
) -> Response:
    """Delete a slide's record, pyramid, cached tiles and its inference tasks' artefacts
    (its file stays)."""
    _delete(service, state, slide, user, client)
    return Response(status_code=204)


@router.get("/{slide_id}/properties")
def read_slide_properties(slide: OwnedSlide) -> dict[str, str]:
    """Every vendor property, as OpenSlide names them."""
    return {key: str(value) for key, value in slide.properties.items()}


@router.get("/{slide_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
async def read_slide_thumbnail(
    slide: ViewedSlide,
    service: SlideServiceDep,
    request: Request,
    max: Annotated[int, Query(ge=1, le=4096, description="Longest side, pixels.")] = 512,
) -> Response:
    """A JPEG of the whole slide fitting in max x max pixels."""
    path = await service.apath(slide)
    tile = await service.tiles.athumbnail(str(slide.id), path, max)
    return image_response(tile, request)


@router.get("/{slide_id}/associated/{image}", responses={200: {"content": {"image/png": {}}}})
async def read_slide_associated_image(
    slide: ViewedSlide, image: str, service: SlideServiceDep, request: Request
) -> Response:
    """An associated image (label, macro, thumbnail, ...) as PNG."""
    path = await service.apath(slide)
    tile = await service.tiles.aassociated_image(str(slide.id), path, image)
    return image_response(tile, request)


def _delete(
    service: SlideService,
    state: State,
    slide: SlideRecord,
    user: CurrentUser,
    client: RequestClient,
) -> None:
    forget_slide_tasks(state, user, client, slide.id)  # its tasks' artefacts go first
    service.delete(slide)
    state.identity.audit.record(
        "slide.deleted",
        actor=user.id,
        target_type="slide",
        target_id=slide.id,
        client_ip=client.ip,
        name=slide.name,
    )
