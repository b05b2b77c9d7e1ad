"""Capabilities ``workflow`` (fans out per FOV), ``workflow.fov`` and ``merge``.

The ``metadata`` capability (shared with slides) lives in :mod:`functions.metadata`; it
calls :func:`functions.microscopy.readers.read_metadata` for microscopy files.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import InvalidInput, JobCancelled
from common.objects.access import stored_path
from functions.microscopy.merge import parse_fov_spec
from functions.microscopy.pipeline import WorkflowOptions


class WorkflowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored microscopy file (ND2, OME-TIFF, TIFF).")
    fovs: str | list[int] | None = Field(
        None,
        description='FOVs to process, e.g. "0-5, 7" or [0, 1]; all when omitted. A list is '
        "taken as checked against the file (see `plan_workflow`); a spec or none makes the "
        "job read the file's metadata and check it.",
    )
    options: WorkflowOptions = WorkflowOptions()


class FovOutcome(BaseModel):
    fov: int
    status: str
    job_id: uuid.UUID
    summary: dict[str, Any] | None = None
    traces_csv: uuid.UUID | None = None
    traces_parquet: uuid.UUID | None = None
    labels: uuid.UUID | None = None
    error: str | None = None


class WorkflowResult(BaseModel):
    file_id: uuid.UUID
    fovs: list[FovOutcome]
    succeeded: list[int]
    failed: list[int]


class FovParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    fov: int = Field(ge=0)
    options: WorkflowOptions = WorkflowOptions()


class FovResultModel(BaseModel):
    fov: int
    summary: dict[str, Any]
    traces_csv: uuid.UUID
    traces_parquet: uuid.UUID
    labels: uuid.UUID


class MergeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traces: list[uuid.UUID] = Field(min_length=1, description="Traces tables (CSV/Parquet).")
    samples: dict[str, str | list[int]] = Field(
        min_length=1, description='Sample name -> FOV spec, e.g. {"ctrl": "0-5, 7"}.'
    )
    features: list[str] | None = None


class MergeResult(BaseModel):
    files: dict[str, uuid.UUID]


@capability(
    "workflow",
    params=WorkflowParams,
    result=WorkflowResult,
    resources=Resources(cpu=0.25, memory_mib=512, timeout_s=6 * 3600),
)
def run_workflow(params: WorkflowParams, ctx: Context) -> WorkflowResult:
    """Segment, track and measure every cell of the chosen FOVs, one child job per FOV."""
    if isinstance(params.fovs, list):  # planned by the caller (`plan_workflow`)
        fovs = params.fovs
    else:
        fovs = checked_fovs(params, _microscopy_metadata(ctx, params.file_id))
    jobs: list[uuid.UUID] = []
    for fov in fovs:
        if ctx.cancelled():
            break  # gather below cancels the children spawned so far and waits for them
        jobs.append(
            ctx.spawn(
                "workflow.fov", FovParams(file_id=params.file_id, fov=fov, options=params.options)
            )
        )
    outcomes = []
    for i, (fov, job) in enumerate(zip(fovs[: len(jobs)], jobs, strict=True)):
        (child,) = ctx.gather([job])
        outcomes.append(_fov_outcome(fov, child))
        ctx.progress((i + 1) / len(fovs), f"FOV {fov}: {child.status}")
    if ctx.cancelled():
        raise JobCancelled()
    ok = [o.fov for o in outcomes if o.status == "succeeded"]
    failed = [o.fov for o in outcomes if o.status != "succeeded"]
    if failed:
        ctx.log(f"FOVs that did not succeed: {failed}")
    return WorkflowResult(file_id=params.file_id, fovs=outcomes, succeeded=ok, failed=failed)


def plan_workflow(params: WorkflowParams, metadata: Mapping[str, Any]) -> WorkflowParams:
    """`params` with `fovs` made the explicit list :func:`checked_fovs` gives: what the
    processing API submits, so the job need not read the file again."""
    return params.model_copy(update={"fovs": checked_fovs(params, metadata)})


def checked_fovs(params: WorkflowParams, metadata: Mapping[str, Any]) -> list[int]:
    """The FOVs `params` ask for, checked with their channels against the file: the one
    check of a workflow's params against its file.

    `metadata` is the file's microscopy metadata (``n_fovs``, ``n_channels``), read once
    by whoever plans: the processing API before it submits, or the job itself when it
    was submitted without a list. Raises InvalidInput naming what does not exist.
    """
    n_fovs, n_channels = int(metadata["n_fovs"]), int(metadata["n_channels"])
    channels = [params.options.phase_channel, *params.options.fluorescence_channels]
    if max(channels) >= n_channels:
        raise InvalidInput(f"channel {max(channels)} does not exist (the file has {n_channels})")
    return parse_fov_spec(range(n_fovs) if params.fovs is None else params.fovs, n_fovs=n_fovs)


def _microscopy_metadata(ctx: Context, file_id: uuid.UUID) -> dict[str, Any]:
    from functions.metadata import describe_stored

    described = describe_stored(ctx.objects, ctx.file(file_id))  # no pixel data
    if described.kind != "microscopy":
        raise InvalidInput("the file is a whole-slide image, not a microscopy time-lapse")
    return described.metadata


def fov_traces(result: WorkflowResult, fovs: Iterable[int]) -> list[uuid.UUID]:
    """The Parquet traces of `fovs` in a finished workflow's result, in FOV order;
    InvalidInput naming the FOVs that have none (not processed, or failed)."""
    by_fov = {
        o.fov: o.traces_parquet
        for o in result.fovs
        if o.status == "succeeded" and o.traces_parquet is not None
    }
    chosen = sorted(set(fovs))
    missing = [fov for fov in chosen if fov not in by_fov]
    if missing:
        raise InvalidInput(
            f"FOVs {missing} have no traces in this workflow (FOVs with traces: {sorted(by_fov)})"
        )
    return [by_fov[fov] for fov in chosen]


def _fov_outcome(fov: int, child: Any) -> FovOutcome:
    result = child.result or {}
    error = child.error.get("message") if child.error else None
    return FovOutcome(
        fov=fov,
        status=child.status,
        job_id=child.job_id,
        summary=result.get("summary"),
        traces_csv=result.get("traces_csv"),
        traces_parquet=result.get("traces_parquet"),
        labels=result.get("labels"),
        error=error,
    )


@capability(
    "workflow.fov",
    params=FovParams,
    result=FovResultModel,
    resources=Resources(cpu=1, memory_mib=4096, timeout_s=4 * 3600, retries=1),
)
def run_workflow_fov(params: FovParams, ctx: Context) -> FovResultModel:
    """Run the per-FOV pipeline on one FOV and store its traces and label stack."""
    from functions.microscopy.pipeline import run_fov
    from functions.microscopy.readers import open_reader

    opts = params.options
    if opts.device == "auto":
        opts = opts.model_copy(update={"device": ctx.device})
    stored = ctx.file(params.file_id)
    with (
        stored_path(ctx.objects, stored.key, stored.name) as path,
        open_reader(path, microscopy_only=True) as reader,
        tempfile.TemporaryDirectory(prefix="aperture-fov-") as tmp,
    ):
        out = Path(tmp)
        result = run_fov(
            reader, params.fov, out, opts, progress=ctx.progress, cancelled=ctx.cancelled
        )
        base = f"{reader.metadata.base_name}_fov_{params.fov:03d}"
        with open(result.csv, "rb") as fh:
            csv_file = ctx.save_file(
                f"{base}_traces.csv", fh, content_type="text/csv", kind="traces"
            )
        with open(result.parquet, "rb") as fh:
            pq_file = ctx.save_file(
                f"{base}_traces.parquet",
                fh,
                content_type="application/vnd.apache.parquet",
                kind="traces",
            )
        with open(result.labels, "rb") as fh:
            labels = ctx.save_file(
                f"{base}_labels.tif", fh, content_type="image/tiff", kind="labels"
            )
    summary = json.loads(json.dumps(result.summary))
    return FovResultModel(
        fov=params.fov,
        summary=summary,
        traces_csv=csv_file.id,
        traces_parquet=pq_file.id,
        labels=labels.id,
    )


@capability(
    "merge",
    params=MergeParams,
    result=MergeResult,
    resources=Resources(cpu=1, memory_mib=2048, timeout_s=3600),
)
def run_merge(params: MergeParams, ctx: Context) -> MergeResult:
    """Long CSVs (time, fov, cell, value) of good cells per sample, feature and channel."""
    from functions.microscopy.merge import merge_samples
    from functions.microscopy.traces import read_table

    for spec in params.samples.values():
        parse_fov_spec(spec)  # invalid specs fail before any file is fetched
    tables = []
    for file_id in params.traces:
        stored = ctx.file(file_id)
        with stored_path(ctx.objects, stored.key, stored.name) as path:
            try:
                tables.append(read_table(path))
            except Exception as exc:
                raise InvalidInput(f"{path.name} is not a traces table: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="aperture-merge-") as tmp:
        paths = merge_samples(tables, params.samples, tmp, features=params.features)
        files = {}
        for p in paths:
            with open(p, "rb") as fh:
                files[p.name] = ctx.save_file(
                    p.name, fh, content_type="text/csv", kind="merged-traces"
                ).id
    return MergeResult(files=files)
