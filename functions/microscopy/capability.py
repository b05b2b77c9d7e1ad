"""Capabilities ``workflow`` (fans out per FOV), ``workflow.fov`` and ``merge``.

The ``metadata`` capability (shared with slides) lives in :mod:`functions.metadata`; it
calls :func:`functions.microscopy.readers.read_metadata` for microscopy files.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, StoredFile, SubmitContext, capability
from common.errors import ApertureError, InvalidInput, JobCancelled, UnsupportedFile
from common.objects import ObjectStore
from common.objects.access import stored_path
from functions.microscopy.merge import parse_fov_spec
from functions.microscopy.pipeline import WorkflowOptions


class WorkflowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored microscopy file (ND2, OME-TIFF, TIFF).")
    fovs: str | list[int] | None = Field(
        None,
        description='FOVs to process, e.g. "0-5, 7", "3-" (3 to the last) or [0, 1]; all '
        "when omitted. Checked with the channels and z plane against the file's header when "
        "the job is submitted, which stores the explicit list.",
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
    warnings: list[str] = Field(
        default_factory=list, description="What the caller should know, e.g. FOVs that failed."
    )


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


class MergedFile(BaseModel):
    sample: str
    feature: str
    channel: int
    name: str
    file_id: uuid.UUID


class MergeResult(BaseModel):
    files: dict[str, uuid.UUID] = Field(description="File name -> file id.")
    outputs: list[MergedFile] = Field(
        default_factory=list, description="The same files by sample, feature and channel."
    )


def check_workflow(params: WorkflowParams, ctx: SubmitContext) -> WorkflowParams:
    """Submit-time: FOVs, channels and z checked against the file's header (its one read);
    the job is stored with the explicit FOV list (:func:`plan_workflow`)."""
    return plan_workflow(params, microscopy_metadata(ctx.objects, ctx.file(params.file_id)))


def check_fov(params: FovParams, ctx: SubmitContext) -> FovParams:
    """Submit-time (a `workflow.fov` job submitted on its own): its FOV, channels and z
    checked against the file's header."""
    single = WorkflowParams(file_id=params.file_id, fovs=[params.fov], options=params.options)
    checked_fovs(single, microscopy_metadata(ctx.objects, ctx.file(params.file_id)))
    return params


def check_merge(params: MergeParams, ctx: SubmitContext) -> MergeParams:
    """Submit-time: the sample specs parse and every traces file is the owner's."""
    for spec in params.samples.values():
        parse_fov_spec(spec)
    for file_id in params.traces:
        ctx.file(file_id)
    return params


@capability(
    "workflow",
    params=WorkflowParams,
    result=WorkflowResult,
    resources=Resources(cpu=0.25, memory_mib=512, timeout_s=6 * 3600),
    check=check_workflow,
)
def run_workflow(params: WorkflowParams, ctx: Context) -> WorkflowResult:
    """Segment, track and measure every cell of the chosen FOVs, one child job per FOV.
    It fails when every FOV failed; when some did, it succeeds and says which."""
    if isinstance(params.fovs, list):  # planned at submit (`check_workflow`)
        fovs = params.fovs
    else:  # submitted as a child, unchecked: read the header here, once
        stored = ctx.file(params.file_id)
        fovs = checked_fovs(params, microscopy_metadata(ctx.objects, stored))
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
    if outcomes and not ok:
        first = next(o for o in outcomes if o.status != "succeeded")
        raise ApertureError(
            f"every FOV failed ({len(failed)}); FOV {first.fov}: {first.error or first.status}"
        )
    warnings = []
    if failed:
        warnings.append(f"{len(failed)} of {len(outcomes)} FOVs failed: {failed}; see `fovs`")
    warnings += background_warnings(outcomes)
    for warning in warnings:
        ctx.log(f"warning: {warning}")
    return WorkflowResult(
        file_id=params.file_id, fovs=outcomes, succeeded=ok, failed=failed, warnings=warnings
    )


def background_warnings(outcomes: Iterable[FovOutcome]) -> list[str]:
    """One line per FOV and channel whose background residual exceeded the threshold on
    some frame: the traces of those frames carry the background's error."""
    out = []
    for outcome in outcomes:
        background = (outcome.summary or {}).get("background") or {}
        for channel, quality in (background.get("channels") or {}).items():
            frames = quality.get("flagged_frames") or []
            if frames:
                out.append(
                    f"FOV {outcome.fov}, channel {channel}: background residual above "
                    f"{background.get('threshold', 0):.1%} of its level on {len(frames)} "
                    f"frame(s) (first {frames[0]}, worst {quality.get('worst', 0):.1%}); "
                    "check intensities there, or try another background_method / tile_size"
                )
    return out


def plan_workflow(params: WorkflowParams, metadata: Mapping[str, Any]) -> WorkflowParams:
    """`params` with `fovs` made the explicit list :func:`checked_fovs` gives: what the
    processing API submits, so the job need not read the file again."""
    return params.model_copy(update={"fovs": checked_fovs(params, metadata)})


def checked_fovs(params: WorkflowParams, metadata: Mapping[str, Any]) -> list[int]:
    """The FOVs `params` ask for, checked with their channels and z plane against the
    file: the one check of a workflow's params against its file.

    `metadata` is the file's microscopy metadata (``n_fovs``, ``n_channels``, ``n_z``),
    read once at submit (`check_workflow`), or by the job itself when it was submitted
    unchecked (as a child). Raises InvalidInput naming what does not exist.
    """
    n_fovs, n_channels = int(metadata["n_fovs"]), int(metadata["n_channels"])
    n_z = int(metadata.get("n_z") or 1)
    channels = [params.options.phase_channel, *params.options.fluorescence_channels]
    if max(channels) >= n_channels:
        raise InvalidInput(f"channel {max(channels)} does not exist (the file has {n_channels})")
    if params.options.z >= n_z:
        raise InvalidInput(
            f"z plane {params.options.z} does not exist (the file has {n_z}: 0 to {n_z - 1})"
        )
    spec = range(n_fovs) if params.fovs is None else params.fovs
    if isinstance(spec, str):
        spec = _closed(spec, n_fovs)
    return parse_fov_spec(spec, n_fovs=n_fovs)


_OPEN_RANGE = re.compile(r"(^|,)\s*(\d+)\s*-\s*(?=,|$)")


def _closed(spec: str, n_fovs: int) -> str:
    """`spec` with each open range ``N-`` closed at the file's last FOV."""

    def close(match: re.Match[str]) -> str:
        start = int(match.group(2))
        if start >= n_fovs:
            raise InvalidInput(f"FOV {start} does not exist (the file has {n_fovs})")
        return f"{match.group(1)}{start}-{n_fovs - 1}"

    return _OPEN_RANGE.sub(close, spec.strip())


def microscopy_metadata(objects: ObjectStore, stored: StoredFile) -> dict[str, Any]:
    """A stored microscopy file's metadata (its header; no pixel data); UnsupportedFile
    for a whole-slide image."""
    from functions.metadata import describe_stored

    described = describe_stored(objects, stored)
    if described.kind != "microscopy":
        raise UnsupportedFile(f"{stored.name} is a whole-slide image, not a time-lapse")
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


#: A FOV job reports progress and asks whether it was cancelled at most this often:
#: each is a database round trip (~2-5 ms of CPU), while a 512² batch of frames takes
#: ~50 ms, so the job system's own limits (0.2 s) let them cost ~10 % of a small FOV.
#: A cancelled FOV stops within this interval plus one batch.
REPORT_INTERVAL_S = 1.0


def _at_most_every(
    interval_s: float, report: Callable[[float, str], None]
) -> Callable[[float, str], None]:
    """`report` passed through at most once per `interval_s`, and always at the end."""
    last = -math.inf

    def progress(fraction: float, message: str) -> None:
        nonlocal last
        now = time.monotonic()
        if fraction >= 1.0 or now - last >= interval_s:
            last = now
            report(fraction, message)

    return progress


def _polled_every(interval_s: float, check: Callable[[], bool]) -> Callable[[], bool]:
    """`check` asked at most once per `interval_s` (the first time at once); a True
    answer is kept."""
    last, answer = -math.inf, False

    def cancelled() -> bool:
        nonlocal last, answer
        now = time.monotonic()
        if not answer and now - last >= interval_s:
            last, answer = now, check()
        return answer

    return cancelled


@capability(
    "workflow.fov",
    params=FovParams,
    result=FovResultModel,
    resources=Resources(cpu=1, memory_mib=4096, timeout_s=4 * 3600, retries=1),
    check=check_fov,
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
            reader,
            params.fov,
            out,
            opts,
            progress=_at_most_every(REPORT_INTERVAL_S, ctx.progress),
            cancelled=_polled_every(REPORT_INTERVAL_S, ctx.cancelled),
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
    check=check_merge,
)
def run_merge(params: MergeParams, ctx: Context) -> MergeResult:
    """Long CSVs (time, fov, cell, value) of good cells per sample, feature and channel."""
    from functions.microscopy.merge import feature_columns, merge_samples
    from functions.microscopy.traces import read_table

    tables = []  # the sample specs were parsed at submit (`check_merge`)
    for file_id in params.traces:
        stored = ctx.file(file_id)
        with stored_path(ctx.objects, stored.key, stored.name) as path:
            try:
                tables.append(read_table(path))
            except Exception as exc:
                raise InvalidInput(f"{path.name} is not a traces table: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="aperture-merge-") as tmp:
        paths = merge_samples(tables, params.samples, tmp, features=params.features)
        outputs = []
        # merge_samples writes every sample's files in the same feature order
        per_sample = len(paths) // len(params.samples)
        for i, p in enumerate(paths):
            sample = list(params.samples)[i // per_sample]
            ((_, feature, channel),) = feature_columns([p.stem.removeprefix(f"{sample}_")])
            with open(p, "rb") as fh:
                saved = ctx.save_file(p.name, fh, content_type="text/csv", kind="merged-traces")
            outputs.append(
                MergedFile(
                    sample=sample, feature=feature, channel=channel, name=p.name, file_id=saved.id
                )
            )
    return MergeResult(files={o.name: o.file_id for o in outputs}, outputs=outputs)
