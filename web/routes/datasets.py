"""Datasets: named collections of files with a description and tags; their files; stats.

Files join with `POST /datasets/{id}/files {file_ids}` (all or nothing: an id that is
not one of the owner's live files is 404 and nothing changes) and leave one at a time
with `DELETE /datasets/{id}/files/{file_id}` (idempotent for the owner's files that are
not in it). A file is in at most one dataset, so adding it elsewhere moves it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from common.datasets import DatasetFilter, DatasetRecord, Datasets, DatasetStats
from common.errors import InvalidInput
from web.deps import CurrentUser, RequestClient, State, visible_to
from web.schemas import FilePublic, Page, Tag

router = APIRouter(prefix="/datasets", tags=["datasets"])


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Annotated[str, Tag]] = Field(default_factory=list, max_length=32)


class DatasetUpdate(BaseModel):
    """Every field optional; only the ones given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Annotated[str, Tag]] | None = Field(default=None, max_length=32)


class DatasetFilesAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


DatasetPublic = DatasetRecord
DatasetStatsPublic = DatasetStats


def datasets_service(state: State) -> Datasets:
    return state.runtime.datasets


DatasetsService = Annotated[Datasets, Depends(datasets_service)]


def owned_dataset(
    dataset_id: uuid.UUID, datasets: DatasetsService, user: CurrentUser
) -> DatasetRecord:
    """The dataset if the caller may see it (404 otherwise)."""
    return visible_to(user, datasets.get(dataset_id), "dataset")


OwnedDataset = Annotated[DatasetRecord, Depends(owned_dataset)]


NameContains = Annotated[str | None, Query(max_length=255, description="Name contains (any case).")]


def dataset_filter(
    user: CurrentUser, name: NameContains = None, tag: str | None = None
) -> DatasetFilter:
    """The listing filters from the query string, scoped to what the caller may see."""
    return DatasetFilter(owner_id=user.id, all_owners=user.is_admin, name=name, tag=tag)


Filter = Annotated[DatasetFilter, Depends(dataset_filter)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def _audit(
    state: State,
    user: CurrentUser,
    client: RequestClient,
    action: str,
    dataset_id: uuid.UUID,
    **details: Any,
) -> None:
    state.identity.audit.record(
        action,
        actor=user.id,
        target_type="dataset",
        target_id=dataset_id,
        client_ip=client.ip,
        **details,
    )


@router.post("", status_code=201)
def create_dataset(
    body: DatasetCreate,
    datasets: DatasetsService,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> DatasetPublic:
    """Create an empty dataset."""
    dataset = datasets.create(
        owner_id=user.id, name=body.name, description=body.description, tags=body.tags
    )
    _audit(state, user, client, "dataset.created", dataset.id, name=dataset.name)
    return dataset


@router.get("")
def read_datasets(
    datasets: DatasetsService, f: Filter, limit: Limit = 50, offset: Offset = 0
) -> Page[DatasetPublic]:
    """Datasets, newest first, filtered by name (contains) and tag."""
    items, total = datasets.find(f, limit=limit, offset=offset)
    return Page[DatasetPublic](items=items, total=total, limit=limit, offset=offset)


@router.get("/stats")
def read_dataset_stats(
    datasets: DatasetsService, f: Filter, limit: Limit = 50, offset: Offset = 0
) -> Page[DatasetStatsPublic]:
    """Per dataset (same filters and order as the list): files, bytes, kinds, and the
    owner's jobs whose params name the dataset (`dataset_id`) or one of its files
    (`file_id`, `file_ids`), counted by status."""
    page, total = datasets.find(f, limit=limit, offset=offset)
    return Page[DatasetStatsPublic](
        items=datasets.stats(page), total=total, limit=limit, offset=offset
    )


@router.get("/{dataset_id}")
def read_dataset(dataset: OwnedDataset) -> DatasetPublic:
    """One dataset, with its file count and bytes."""
    return dataset


@router.patch("/{dataset_id}")
def update_dataset(
    dataset: OwnedDataset,
    body: DatasetUpdate,
    datasets: DatasetsService,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> DatasetPublic:
    """Rename, describe or re-tag a dataset."""
    fields = body.model_dump(include=body.model_fields_set)
    if fields.get("name", "") is None or fields.get("tags", []) is None:
        raise InvalidInput("name and tags cannot be null (description can)")
    updated = datasets.update(dataset.id, fields)
    _audit(state, user, client, "dataset.updated", dataset.id, fields=sorted(fields))
    return updated


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset: OwnedDataset,
    datasets: DatasetsService,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> Response:
    """Delete a dataset; its files are kept and leave it."""
    released = datasets.delete(dataset.id)
    _audit(
        state,
        user,
        client,
        "dataset.deleted",
        dataset.id,
        name=dataset.name,
        files_released=released,
    )
    return Response(status_code=204)


@router.get("/{dataset_id}/files")
def read_dataset_files(
    dataset: OwnedDataset, datasets: DatasetsService, limit: Limit = 50, offset: Offset = 0
) -> Page[FilePublic]:
    """The dataset's files, newest first."""
    rows, total = datasets.files(dataset.id, limit=limit, offset=offset)
    return Page[FilePublic](
        items=[FilePublic.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post("/{dataset_id}/files")
def add_dataset_files(
    dataset: OwnedDataset,
    body: DatasetFilesAdd,
    datasets: DatasetsService,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> DatasetPublic:
    """Add the owner's files to the dataset (all or none)."""
    updated = datasets.add_files(dataset.id, body.file_ids)
    _audit(
        state,
        user,
        client,
        "dataset.updated",
        dataset.id,
        files_added=[str(i) for i in body.file_ids],
    )
    return updated


@router.delete("/{dataset_id}/files/{file_id}")
def remove_dataset_file(
    dataset: OwnedDataset,
    file_id: uuid.UUID,
    datasets: DatasetsService,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> DatasetPublic:
    """Take a file out of the dataset (the file is kept)."""
    updated = datasets.remove_file(dataset.id, file_id)
    _audit(state, user, client, "dataset.updated", dataset.id, files_removed=[str(file_id)])
    return updated
