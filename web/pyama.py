"""PyAMA's processing API shapes over Aperture's jobs: a PyAMA workflow request becomes
`workflow` params, and a workflow job with its per-FOV children becomes PyAMA's status
and results. HTTP shapes only; what is computed lives in `functions.microscopy`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InvalidInput
from common.jobs.models import JobRecord
from common.jobs.status import Status
from functions.microscopy.capability import WorkflowParams, WorkflowResult
from functions.microscopy.extraction import FLUORESCENCE_FEATURES, PHASE_FEATURES
from functions.microscopy.merge import parse_fov_spec
from functions.microscopy.pipeline import WorkflowOptions

#: PyAMA parameters that steer its own process pool; here every FOV is a job.
IGNORED_PARAMETERS = frozenset({"batch_size", "n_workers"})
#: Options that `channels` sets; refused in `parameters`.
CHANNEL_OPTIONS = frozenset(
    {"phase_channel", "fluorescence_channels", "phase_features", "fluorescence_features"}
)


class ChannelSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: int = Field(ge=0)
    features: list[str] | None = Field(
        None, description="Features to keep in the traces; all when omitted."
    )


class ChannelsSpec(BaseModel):
    """PyAMA's channel choice: one phase-contrast channel, any fluorescence channels."""

    model_config = ConfigDict(extra="forbid")

    phase: ChannelSelection
    fluorescence: list[ChannelSelection] = Field(default_factory=list)


def workflow_params(
    file_id: uuid.UUID, channels: ChannelsSpec, parameters: dict[str, Any]
) -> WorkflowParams:
    """The ``workflow`` params a PyAMA request asks for. What needs the file (FOVs,
    channels, z against its header) is checked when the job is submitted
    (`functions.microscopy.capability.check_workflow`), with the file read once.

    ``parameters`` holds ``fov_start`` / ``fov_end`` (inclusive; from the first and to
    the last FOV when omitted) and any :class:`WorkflowOptions` field; PyAMA's
    ``batch_size`` and ``n_workers`` are accepted and ignored. Raises InvalidInput naming
    what is wrong.
    """
    _check_features(channels)
    clash = sorted(CHANNEL_OPTIONS & set(parameters))
    if clash:
        raise InvalidInput(f"parameters {clash} are set through `channels`")
    options = {
        k: v
        for k, v in parameters.items()
        if k not in IGNORED_PARAMETERS | {"fov_start", "fov_end"}
    }
    fluorescence = channels.fluorescence
    chosen = None
    if any(c.features is not None for c in fluorescence):
        chosen = [
            list(FLUORESCENCE_FEATURES) if c.features is None else c.features for c in fluorescence
        ]
    try:
        opts = WorkflowOptions(
            phase_channel=channels.phase.channel,
            fluorescence_channels=[c.channel for c in fluorescence],
            phase_features=channels.phase.features,
            fluorescence_features=chosen,
            **options,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise InvalidInput(f"invalid parameters: {problems}") from None
    return WorkflowParams(file_id=file_id, fovs=_fov_range(parameters), options=opts)


def _fov_range(parameters: dict[str, Any]) -> str | None:
    """PyAMA's inclusive ``fov_start``-``fov_end`` as a FOV spec ("2-5", "2-" to the
    last); None (every FOV) when neither is given."""
    start, end = parameters.get("fov_start"), parameters.get("fov_end")
    if start is None and end is None:
        return None
    given = [v for v in (start, end) if v is not None]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in given):
        raise InvalidInput("fov_start and fov_end must be integers")
    start = start or 0
    if start < 0 or (end is not None and end < start):
        raise InvalidInput(f"invalid FOV range {start}-{'' if end is None else end}")
    return f"{start}-{'' if end is None else end}"


def _check_features(channels: ChannelsSpec) -> None:
    picks = [(channels.phase, PHASE_FEATURES, "phase")]
    picks += [(c, FLUORESCENCE_FEATURES, "fluorescence") for c in channels.fluorescence]
    for selection, known, kind in picks:
        unknown = sorted(set(selection.features or ()) - set(known))
        if unknown:
            raise InvalidInput(f"unknown {kind} features {unknown}; known: {sorted(known)}")


class Progress(BaseModel):
    current: int = Field(description="FOVs finished.")
    total: int
    percentage: float


class FovState(BaseModel):
    fov: int
    status: str
    job_id: uuid.UUID | None
    progress: float
    error: str | None


class WorkflowStatus(BaseModel):
    success: bool = True
    job_id: uuid.UUID
    status: str
    message: str | None
    error: str | None
    progress: Progress
    fovs: list[FovState]
    failed_fovs: list[int] = Field(
        default_factory=list, description="FOVs whose job ended without succeeding."
    )
    warnings: list[str] = Field(default_factory=list)


class TraceFiles(BaseModel):
    fov: int
    csv_file_id: uuid.UUID
    parquet_file_id: uuid.UUID
    labels_file_id: uuid.UUID
    job_id: uuid.UUID
    summary: dict[str, Any]


class WorkflowResults(BaseModel):
    success: bool = True
    job_id: uuid.UUID
    traces: list[TraceFiles]
    summary: dict[str, Any]


def _requested_fovs(params: dict[str, Any]) -> list[int] | None:
    spec = params.get("fovs")
    return None if spec is None else parse_fov_spec(spec)


def workflow_status(job: JobRecord, children: Sequence[JobRecord]) -> WorkflowStatus:
    """Status of a workflow job: overall state, progress (FOVs done of all) and the
    state of every FOV (``pending`` until its child job exists)."""
    by_fov = {child.params.get("fov"): child for child in children}
    fovs = _requested_fovs(job.params) or sorted(f for f in by_fov if f is not None)
    states = []
    done, fraction = 0, 0.0
    for fov in fovs:
        child = by_fov.get(fov)
        if child is None:
            states.append(
                FovState(fov=fov, status="pending", job_id=None, progress=0.0, error=None)
            )
            continue
        finished = child.status.terminal
        done += finished
        fraction += 1.0 if finished else float(child.progress)
        states.append(
            FovState(
                fov=fov,
                status=child.status.value,
                job_id=child.id,
                progress=1.0 if finished else float(child.progress),
                error=child.error.message if child.error else None,
            )
        )
    total = len(fovs)
    if job.status is Status.succeeded:
        fraction = float(total)
    percentage = round(100.0 * fraction / total, 1) if total else 0.0
    ended = {"failed", "cancelled"}
    return WorkflowStatus(
        job_id=job.id,
        status=job.status.value,
        message=job.progress_message,
        error=job.error.message if job.error else None,
        progress=Progress(current=done, total=total, percentage=percentage),
        fovs=states,
        failed_fovs=[s.fov for s in states if s.status in ended],
        warnings=list((job.result or {}).get("warnings", [])),
    )


def workflow_results(job: JobRecord) -> WorkflowResults:
    """Traces files per FOV of a finished workflow job, and a summary over FOVs."""
    result = WorkflowResult.model_validate(job.result)
    traces, failed = [], []
    cells = {"cells_found": 0, "cells_tracked": 0, "cells_kept": 0}
    for fov in result.fovs:
        if fov.status != "succeeded":
            failed.append({"fov": fov.fov, "status": fov.status, "error": fov.error})
            continue
        summary = fov.summary or {}
        for key in cells:
            cells[key] += int(summary.get(key, 0))
        traces.append(
            TraceFiles(
                fov=fov.fov,
                csv_file_id=fov.traces_csv,  # type: ignore[arg-type]  # set when succeeded
                parquet_file_id=fov.traces_parquet,  # type: ignore[arg-type]
                labels_file_id=fov.labels,  # type: ignore[arg-type]
                job_id=fov.job_id,
                summary=summary,
            )
        )
    summary = {
        "file_id": str(result.file_id),
        "n_fovs": len(result.fovs),
        "succeeded": result.succeeded,
        "failed": failed,
        "failed_fovs": result.failed,
        "warnings": result.warnings,
        "time_units": "min",
        **cells,
    }
    return WorkflowResults(job_id=job.id, traces=traces, summary=summary)
