"""Trace analysis: kinetic models, load-traces, and fitting jobs (start, status, cancel,
results). Compute lives in `functions.fitting`; this module checks input and ownership."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from common.arrays import gpu_available
from common.errors import Conflict, InvalidInput, NotFound
from common.jobs.models import JobError, JobRecord
from common.jobs.status import Status
from functions.fitting.capability import FittingOptions, TraceFileOptions
from functions.fitting.models import list_models
from functions.fitting.plot_job import plots_state
from functions.fitting.results import load_results, results_page
from functions.fitting.trace_summary import summarize_traces
from functions.fitting.traces import read_traces
from web.deps import CurrentUser, RequestClient, Sources, State, owned_job_of
from web.fields import Offset
from web.http import JOB_ACCEPTED, job_location
from web.schemas import FileSource

router = APIRouter(prefix="/analysis", tags=["analysis"])

FITTING = "fitting"
FITTING_GPU = "fitting.gpu"  # device "gpu": the whole file on one GPU function


class ParameterPublic(BaseModel):
    name: str
    description: str
    default: float
    bounds: tuple[float, float]
    unit: str
    fixed: bool = Field(description="Held at its value by default (else fitted).")


class ModelPublic(BaseModel):
    name: str
    description: str
    equation: str
    parameters: list[ParameterPublic]


class TracesSource(FileSource, TraceFileOptions):
    """Exactly one of a stored file (`file_id`) or a server path under the import roots."""


class TimePoints(BaseModel):
    min: int
    median: float
    max: int


class TracePreview(BaseModel):
    fov: int | str
    cell: int | str
    time_h: list[float]
    value: list[float]


class TracesPublic(BaseModel):
    file_id: uuid.UUID
    cell_count: int
    time_points: TimePoints = Field(description="Valid points per cell, over all cells.")
    time_units: str
    time_range_h: tuple[float, float] | None
    value_range: tuple[float, float] | None
    nan_count: int
    missing_points: int
    empty_cells: int
    layout: str
    preview: list[TracePreview]


class FittingStart(FileSource, FittingOptions):
    """The `fitting` params, with the file given as a stored file or a server path;
    parsing it checks the model and its overrides (the one time they are resolved)."""


class FittingStarted(BaseModel):
    success: Literal[True] = True
    job_id: uuid.UUID
    file_id: uuid.UUID


class FittingStatus(BaseModel):
    job_id: uuid.UUID
    status: Status
    progress: float
    message: str | None
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class FittingResults(BaseModel):
    job_id: uuid.UUID
    summary: dict[str, Any]
    results_file_id: uuid.UUID = Field(description="The per-trace results as CSV.")
    parquet_file_id: uuid.UUID
    plot_file_ids: list[uuid.UUID] = Field(description="The plots, once they are made.")
    plots: dict[str, uuid.UUID] = Field(description="The same plots by name.")
    plots_status: Literal["pending", "ready", "failed"] = Field(
        description="Plots are made after the results: pending until then; failed plots "
        "are named in summary.plot_errors (they never fail the fit)."
    )
    plots_job_id: uuid.UUID | None = Field(description="The job that makes the plots.")
    results: list[dict[str, Any]] = Field(description="Per-trace rows, one page.")
    total: int
    limit: int
    offset: int


FittingJob = Annotated[JobRecord, Depends(owned_job_of((FITTING, FITTING_GPU), "a fitting job"))]


def _status(job: JobRecord) -> FittingStatus:
    return FittingStatus(
        job_id=job.id,
        status=job.status,
        progress=job.progress,
        message=job.progress_message,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("/models")
def read_models() -> list[ModelPublic]:
    """Every fitting model: equation and parameters with defaults, bounds and units."""
    return [
        ModelPublic(
            **{k: m[k] for k in ("name", "description", "equation")},
            parameters=[
                ParameterPublic(
                    bounds=(p["lower"], p["upper"]),
                    **{k: p[k] for k in ("name", "description", "default", "unit", "fixed")},
                )
                for p in m["parameters"]
            ],
        )
        for m in list_models()
    ]


@router.post("/load-traces")
def load_traces(body: TracesSource, state: State, sources: Sources) -> TracesPublic:
    """Read a traces file and describe it: cells, points per cell, units, ranges."""
    stored = sources(body)
    traces = read_traces(
        state.runtime.objects.get_bytes(stored.key), name=stored.name, time_unit=body.time_unit
    )
    return TracesPublic(file_id=stored.id, **summarize_traces(traces))


@router.post("/fitting/start", **JOB_ACCEPTED)
def start_fitting(
    body: FittingStart,
    state: State,
    sources: Sources,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> FittingStarted:
    """Fit a model to every trace of a file, as a job (params and the file's columns
    checked before it exists). Device "gpu" runs it as a `fitting.gpu` job, on a GPU
    function."""
    if body.device == "gpu" and not _gpu_deployment(state):
        raise InvalidInput(
            "device 'gpu': this deployment has no GPU (local workers on a machine without "
            "a CUDA GPU and cupy); ask for 'auto' or 'cpu'"
        )
    stored = sources(body)
    function = FITTING_GPU if body.device == "gpu" else FITTING
    job = state.submit_job(user, client, function, body.for_file(stored.id))
    job_location(request, response, job.id)
    return FittingStarted(job_id=job.id, file_id=stored.id)


def _gpu_deployment(state: State) -> bool:
    """Whether `fitting.gpu` jobs get a GPU: on Modal it declares one; local workers
    share this machine."""
    return state.settings.executor == "modal" or gpu_available()


@router.get("/fitting/status/{job_id}")
def read_fitting_status(job: FittingJob) -> FittingStatus:
    """A fitting job's status and progress."""
    return _status(job)


@router.post("/fitting/cancel/{job_id}")
def cancel_fitting(
    job: FittingJob, state: State, user: CurrentUser, client: RequestClient
) -> FittingStatus:
    """Cancel a fitting job and its child jobs."""
    return _status(state.cancel_job(user, client, job.id))


@router.get("/fitting/results/{job_id}")
def read_fitting_results(
    job: FittingJob,
    state: State,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Offset = 0,
) -> FittingResults:
    """Summary, artefact file ids and one page of per-trace results of a finished fit."""
    if job.status is not Status.succeeded or not job.result:
        why = f": {job.error.message}" if job.error else ""
        raise Conflict(
            f"job {job.id} is {job.status.value}; results exist once it has succeeded{why}"
        )
    result = job.result
    parquet = state.runtime.files.get(uuid.UUID(result["parquet_file_id"]))
    table = load_results(state.runtime.objects.get_bytes(parquet.key))
    plots = plots_state(result, _plots_job(state, result.get("plots_job_id")))
    return FittingResults(
        job_id=job.id,
        summary={**result["summary"], "plot_errors": plots.errors},
        results_file_id=result["results_file_id"],
        parquet_file_id=parquet.id,
        plot_file_ids=list(plots.plots.values()),
        plots=plots.plots,
        plots_status=plots.status,
        plots_job_id=result.get("plots_job_id"),
        results=results_page(table, offset=offset, limit=limit),
        total=table.num_rows,
        limit=limit,
        offset=offset,
    )


def _plots_job(state: State, job_id: str | None) -> JobRecord | None:
    """The `fitting.plots` child a fitting job's result names (None: none, or gone)."""
    if job_id is None:
        return None
    try:
        return state.runtime.jobs.get(uuid.UUID(job_id))
    except NotFound:
        return None
