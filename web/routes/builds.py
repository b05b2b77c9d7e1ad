"""Dataset builds: training data (WebDataset shards, manifest, split, summary) made from a
dataset's slides and time-lapses by a `datasets.build` job. The spec is planned against
records before the job exists, so bad input (a patch size or resolution out of range, a
`labels_from` task of another user or slide, a time-lapse without workflow results) is a
422 naming the problem. Cancel a build through the jobs routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from common.errors import InvalidInput
from common.jobs.models import JobRecord
from common.jobs.queries import JobFilter
from functions.datasets.params import BuildParams, BuildSpec
from functions.datasets.plan import plan_build
from web.deps import CurrentUser, OwnedJob, RequestClient, State, check_function
from web.fields import Limit, Offset
from web.http import JOB_ACCEPTED, job_location
from web.routes.datasets import OwnedDataset
from web.schemas import Page

router = APIRouter(prefix="/datasets", tags=["dataset builds"])

BUILD = "datasets.build"


class BuildPart(BaseModel):
    """One source file's part of a build."""

    job_id: uuid.UUID
    file_id: uuid.UUID | None
    name: str | None
    split: str | None
    status: str
    progress: float
    samples: int | None = None
    error: str | None = None


class BuildPublic(BaseModel):
    job_id: uuid.UUID
    dataset_id: uuid.UUID
    status: str
    progress: float
    progress_message: str | None
    created_at: datetime
    samples: int | None = None
    summary: dict[str, Any] | None = None
    shard_file_ids: list[uuid.UUID] = []
    manifest_csv_file_id: uuid.UUID | None = None
    manifest_parquet_file_id: uuid.UUID | None = None
    summary_file_id: uuid.UUID | None = None
    failed_sources: list[dict[str, Any]] = []
    error: str | None = None
    parts: list[BuildPart] | None = None


def _public(job: JobRecord, parts: list[JobRecord] | None = None) -> BuildPublic:
    result = job.result or {}
    return BuildPublic(
        job_id=job.id,
        dataset_id=job.params["dataset_id"],
        status=job.status.value,
        progress=job.progress,
        progress_message=job.progress_message,
        created_at=job.created_at,
        samples=result.get("samples"),
        summary=result.get("summary"),
        shard_file_ids=result.get("shard_file_ids", []),
        manifest_csv_file_id=result.get("manifest_csv_file_id"),
        manifest_parquet_file_id=result.get("manifest_parquet_file_id"),
        summary_file_id=result.get("summary_file_id"),
        failed_sources=result.get("failed_sources", []),
        error=job.error.message if job.error else None,
        parts=None if parts is None else [_part(p) for p in parts],
    )


def _part(job: JobRecord) -> BuildPart:
    source = job.params.get("source", {})
    return BuildPart(
        job_id=job.id,
        file_id=source.get("file_id"),
        name=source.get("name"),
        split=source.get("split"),
        status=job.status.value,
        progress=job.progress,
        samples=(job.result or {}).get("samples"),
        error=job.error.message if job.error else None,
    )


def _builds_of(state: State, dataset_id: uuid.UUID, owner_id: uuid.UUID | None) -> list[JobRecord]:
    """The owner's builds of the dataset, newest first."""
    found, offset = [], 0
    f = JobFilter(owner_id=owner_id, function=BUILD)
    while True:
        items, total = state.runtime.queries.find(f, limit=500, offset=offset)
        found += [j for j in items if str(j.params.get("dataset_id")) == str(dataset_id)]
        offset += len(items)
        if offset >= total or not items:
            return found


@router.post("/{dataset_id}/builds", **JOB_ACCEPTED)
def create_build(
    dataset: OwnedDataset,
    body: BuildSpec,
    state: State,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> BuildPublic:
    """Start a build: shards, manifest and summary of the dataset's (or the named) files."""
    params = BuildParams(**body.model_dump(), dataset_id=dataset.id)
    planned = plan_build(state.runtime, dataset.owner_id, params)
    # an admin's build of another user's dataset runs as its owner (it reads their files)
    job = state.submit_job(user, client, BUILD, planned, on_behalf_of=dataset.owner_id)
    job_location(request, response, job.id)
    return _public(job)


@router.get("/{dataset_id}/builds")
def read_builds(
    dataset: OwnedDataset,
    state: State,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[BuildPublic]:
    """The dataset's builds, newest first."""
    builds = _builds_of(state, dataset.id, dataset.owner_id)
    items = [_public(j) for j in builds[offset : offset + limit]]
    return Page[BuildPublic](items=items, total=len(builds), limit=limit, offset=offset)


@router.get("/{dataset_id}/builds/{job_id}")
def read_build(dataset: OwnedDataset, job: OwnedJob, state: State) -> BuildPublic:
    """One build: status, progress per part (source file), summary, shard and manifest ids.
    Another user's job is 404; another kind of job, or another dataset's build, 422."""
    check_function(job, BUILD, "a dataset build")
    if str(job.params.get("dataset_id")) != str(dataset.id):
        raise InvalidInput(f"build {job.id} is of dataset {job.params.get('dataset_id')}")
    return _public(job, state.runtime.queries.children(job.id))
