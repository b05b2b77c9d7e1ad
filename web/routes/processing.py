"""Microscopy processing (PyAMA's API): load-metadata, features, the per-FOV workflow
(start, status, cancel, results) and merge (start, results). Compute lives in
`functions.metadata` and `functions.microscopy`, PyAMA's shapes in `web.pyama`; this
module resolves the file, checks ownership and submits jobs (whose submit-time checks
read the file's header once)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import StoredFile
from common.errors import Conflict, InvalidInput
from common.jobs.models import JobRecord
from functions.metadata import MetadataResult, describe_stored
from functions.microscopy import list_features
from functions.microscopy.capability import (
    MergedFile,
    MergeParams,
    MergeResult,
    WorkflowResult,
    fov_traces,
)
from functions.microscopy.extraction import FLUORESCENCE_FEATURES, PHASE_FEATURES
from functions.microscopy.merge import parse_fov_spec
from web.deps import (
    CurrentUser,
    RequestClient,
    Sources,
    State,
    check_function,
    owned_job,
    owned_job_of,
)
from web.http import JOB_ACCEPTED, job_location
from web.pyama import (
    ChannelsSpec,
    WorkflowResults,
    WorkflowStatus,
    workflow_params,
    workflow_results,
    workflow_status,
)
from web.schemas import FileSource

router = APIRouter(prefix="/processing", tags=["processing"])

WORKFLOW = "workflow"
MERGE = "merge"


class MetadataPublic(BaseModel):
    success: bool = True
    file_id: uuid.UUID
    kind: Literal["microscopy", "slide"]
    metadata: dict[str, Any]


class FeaturePublic(BaseModel):
    name: str
    kind: Literal["phase", "fluorescence"]
    description: str
    unit: str


class FeaturesPublic(BaseModel):
    success: bool = True
    features: list[FeaturePublic]
    phase: list[str]
    fluorescence: list[str]


class WorkflowStart(FileSource):
    channels: ChannelsSpec
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="fov_start, fov_end (inclusive) and workflow options (min_length, ...).",
    )


class JobStarted(BaseModel):
    success: bool = True
    job_id: uuid.UUID
    file_id: uuid.UUID


class MergeStarted(BaseModel):
    success: bool = True
    job_id: uuid.UUID
    workflow_job_id: uuid.UUID


class MergeResults(BaseModel):
    success: bool = True
    job_id: uuid.UUID
    files: list[MergedFile] = Field(description="One long CSV per sample, feature and channel.")


class MergeSample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[^/\\.\x00-\x1f][^/\\\x00-\x1f]*$")
    fovs: str | list[int] = Field(description='e.g. "0-5, 7, 9-11" or [0, 1, 2].')


class MergeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: uuid.UUID = Field(description="A finished workflow job.")
    samples: list[MergeSample] = Field(min_length=1, max_length=256)
    features: list[str] | None = Field(None, description="Feature names; all when omitted.")


def _described(
    state: State, sources: Sources, body: FileSource
) -> tuple[StoredFile, MetadataResult]:
    """The caller's file and its metadata: the one read of its header a request makes."""
    stored = sources(body)
    described = describe_stored(state.runtime.objects, stored)
    if described.kind == "microscopy" and body.file_path is not None:
        described.metadata["file_path"] = body.file_path
    return stored, described


WorkflowJob = Annotated[JobRecord, Depends(owned_job_of(WORKFLOW, "a workflow"))]
MergeJob = Annotated[JobRecord, Depends(owned_job_of(MERGE, "a merge"))]


@router.post("/load-metadata")
def load_metadata(body: FileSource, state: State, sources: Sources) -> MetadataPublic:
    """A microscopy file's or slide's metadata, read without its pixel data."""
    stored, described = _described(state, sources, body)
    return MetadataPublic(file_id=stored.id, kind=described.kind, metadata=described.metadata)


@router.get("/features")
def read_features() -> FeaturesPublic:
    """Features the workflow extracts, with descriptions and units."""
    features = [FeaturePublic.model_validate(f) for f in list_features()]
    return FeaturesPublic(
        features=features, phase=list(PHASE_FEATURES), fluorescence=list(FLUORESCENCE_FEATURES)
    )


@router.post("/workflow/start", **JOB_ACCEPTED)
def start_workflow(
    body: WorkflowStart,
    state: State,
    sources: Sources,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> JobStarted:
    """Start the workflow: one child job per FOV (segment, track, extract). FOVs,
    channels and z are checked against the file before the job exists (422)."""
    stored = sources(body)
    asked = workflow_params(stored.id, body.channels, body.parameters)
    job = state.submit_job(user, client, WORKFLOW, asked)
    job_location(request, response, job.id)
    return JobStarted(job_id=job.id, file_id=stored.id)


@router.get("/workflow/status/{job_id}")
def read_workflow_status(job: WorkflowJob, state: State) -> WorkflowStatus:
    """Overall and per-FOV state of a workflow job."""
    return workflow_status(job, state.runtime.queries.children(job.id))


@router.post("/workflow/cancel/{job_id}")
def cancel_workflow(
    job: WorkflowJob, state: State, user: CurrentUser, client: RequestClient
) -> WorkflowStatus:
    """Cancel a workflow and its unfinished FOV jobs."""
    cancelled = state.cancel_job(user, client, job.id)
    return workflow_status(cancelled, state.runtime.queries.children(job.id))


@router.get("/workflow/results/{job_id}")
def read_workflow_results(job: WorkflowJob) -> WorkflowResults:
    """Traces files (CSV, Parquet) per FOV of a finished workflow, and a summary."""
    if job.status != "succeeded":
        raise Conflict(f"workflow {job.id} is {job.status}; results exist once it succeeded")
    return workflow_results(job)


@router.post("/merge", **JOB_ACCEPTED)
def create_merge(
    body: MergeCreate,
    state: State,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> MergeStarted:
    """Merge a workflow's traces into one long CSV per sample, feature and channel
    (listed by GET /processing/merge/results/{job_id} once done)."""
    job = check_function(owned_job(body.job_id, state, user), WORKFLOW, "a workflow")
    if job.status != "succeeded":
        raise Conflict(f"workflow {job.id} is {job.status}; merge needs a finished one")
    names = [s.name for s in body.samples]
    if len(set(names)) != len(names):
        raise InvalidInput("sample names must differ")
    samples = {s.name: parse_fov_spec(s.fovs) for s in body.samples}
    unknown = set(body.features or ()) - set(PHASE_FEATURES) - set(FLUORESCENCE_FEATURES)
    if unknown:
        raise InvalidInput(f"unknown features {sorted(unknown)}")
    fovs = [fov for chosen in samples.values() for fov in chosen]
    params = MergeParams(
        traces=fov_traces(WorkflowResult.model_validate(job.result), fovs),
        features=body.features,
        samples={s.name: s.fovs for s in body.samples},
    )
    merge = state.submit_job(user, client, MERGE, params)
    job_location(request, response, merge.id)
    return MergeStarted(job_id=merge.id, workflow_job_id=job.id)


@router.get("/merge/results/{job_id}")
def read_merge_results(job: MergeJob) -> MergeResults:
    """The merged CSVs of a finished merge: one per sample, feature and channel."""
    if job.status != "succeeded":
        why = f": {job.error.message}" if job.error else ""
        raise Conflict(f"merge {job.id} is {job.status}; results exist once it succeeded{why}")
    result = MergeResult.model_validate(job.result)
    return MergeResults(job_id=job.id, files=result.outputs)
