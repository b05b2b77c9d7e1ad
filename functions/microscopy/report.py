"""PyAMA's processing API over Aperture's jobs: request -> workflow params, and a
workflow job with its per-FOV children -> status and results.

Pure functions of job records (anything with the attributes of
:class:`common.jobs.models.JobRecord`), so the web layer only translates HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InvalidInput
from common.jobs.status import TERMINAL
from functions.microscopy.capability import WorkflowParams
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
    file_id: uuid.UUID,
    channels: ChannelsSpec,
    parameters: dict[str, Any],
    *,
    n_fovs: int,
    n_channels: int,
) -> WorkflowParams:
    """The ``workflow`` job's params for a PyAMA request, checked against the file.

    ``parameters`` holds ``fov_start`` / ``fov_end`` (inclusive; all FOVs when omitted)
    and any :class:`WorkflowOptions` field; PyAMA's ``batch_size`` and ``n_workers``
    are accepted and ignored. Raises InvalidInput naming what is wrong.
    """
    _check_features(channels)
    used = [channels.phase.channel, *(c.channel for c in channels.fluorescence)]
    if max(used) >= n_channels:
        raise InvalidInput(f"channel {max(used)} does not exist (the file has {n_channels})")
    clash = sorted(CHANNEL_OPTIONS & set(parameters))
    if clash:
        raise InvalidInput(f"parameters {clash} are set through `channels`")
    options = {
        k: v
        for k, v in parameters.items()
        if k not in IGNORED_PARAMETERS | {"fov_start", "fov_end"}
    }
    start, end = parameters.get("fov_start", 0), parameters.get("fov_end", n_fovs - 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise InvalidInput("fov_start and fov_end must be integers")
    if not 0 <= start <= end:
        raise InvalidInput(f"invalid FOV range {start}-{end}")
    if end >= n_fovs:
        raise InvalidInput(f"FOV {end} does not exist (the file has {n_fovs}: 0-{n_fovs - 1})")
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
    return WorkflowParams(file_id=file_id, fovs=list(range(start, end + 1)), options=opts)


def _check_features(channels: ChannelsSpec) -> None:
    picks = [(channels.phase, PHASE_FEATURES, "phase")]
    picks += [(c, FLUORESCENCE_FEATURES, "fluorescence") for c in channels.fluorescence]
    for selection, known, kind in picks:
        unknown = sorted(set(selection.features or ()) - set(known))
        if unknown:
            raise InvalidInput(f"unknown {kind} features {unknown}; known: {sorted(known)}")


def requested_fovs(params: dict[str, Any]) -> list[int] | None:
    spec = params.get("fovs")
    return None if spec is None else parse_fov_spec(spec)


def workflow_status(job: Any, children: Sequence[Any]) -> dict[str, Any]:
    """Status of a workflow job: overall state, progress (FOVs done of all) and the
    state of every FOV (``pending`` until its child job exists)."""
    by_fov = {child.params.get("fov"): child for child in children}
    fovs = requested_fovs(job.params) or sorted(f for f in by_fov if f is not None)
    states = []
    done, fraction = 0, 0.0
    for fov in fovs:
        child = by_fov.get(fov)
        if child is None:
            states.append(
                {"fov": fov, "status": "pending", "job_id": None, "progress": 0.0, "error": None}
            )
            continue
        finished = str(child.status) in TERMINAL
        done += finished
        fraction += 1.0 if finished else float(child.progress)
        states.append(
            {
                "fov": fov,
                "status": str(child.status),
                "job_id": child.id,
                "progress": 1.0 if finished else float(child.progress),
                "error": child.error.message if child.error else None,
            }
        )
    total = len(fovs)
    if str(job.status) == "succeeded":
        fraction = float(total)
    return {
        "job_id": job.id,
        "status": str(job.status),
        "message": job.progress_message,
        "error": job.error.message if job.error else None,
        "progress": {
            "current": done,
            "total": total,
            "percentage": round(100.0 * fraction / total, 1) if total else 0.0,
        },
        "fovs": states,
    }


def workflow_results(job: Any) -> dict[str, Any]:
    """Traces files per FOV of a finished workflow job, and a summary over FOVs."""
    result = job.result or {}
    traces, failed = [], []
    cells = {"cells_found": 0, "cells_tracked": 0, "cells_kept": 0}
    for fov in result.get("fovs", []):
        if fov["status"] != "succeeded":
            failed.append({"fov": fov["fov"], "status": fov["status"], "error": fov["error"]})
            continue
        summary = fov.get("summary") or {}
        for key in cells:
            cells[key] += int(summary.get(key, 0))
        traces.append(
            {
                "fov": fov["fov"],
                "csv_file_id": fov["traces_csv"],
                "parquet_file_id": fov["traces_parquet"],
                "labels_file_id": fov["labels"],
                "job_id": fov["job_id"],
                "summary": summary,
            }
        )
    return {
        "traces": traces,
        "summary": {
            "file_id": result.get("file_id"),
            "n_fovs": len(result.get("fovs", [])),
            "succeeded": result.get("succeeded", []),
            "failed": failed,
            "time_units": "min",
            **cells,
        },
    }


def merge_traces(job: Any, samples: dict[str, list[int]]) -> list[uuid.UUID]:
    """The Parquet traces of every FOV the samples name; InvalidInput when one has
    none (not processed, or failed)."""
    by_fov = {t["fov"]: t for t in workflow_results(job)["traces"]}
    chosen = sorted({fov for fovs in samples.values() for fov in fovs})
    missing = [fov for fov in chosen if fov not in by_fov]
    if missing:
        raise InvalidInput(
            f"FOVs {missing} have no traces in workflow {job.id} "
            f"(FOVs with traces: {sorted(by_fov)})"
        )
    return [uuid.UUID(str(by_fov[fov]["parquet_file_id"])) for fov in chosen]
