"""Capabilities `fitting` (fits every trace of a file, fanning out above a size),
`fitting.chunk` (one slice of traces, a child of `fitting`) and `fitting.gpu` (every
trace of a file on one GPU: it fits 10^6 traces a second, so it never fans out).

Input is a stored file given by `file_id` (long CSV, wide CSV or Parquet). Paths under
the import roots are turned into stored files by the files API's import, so this
capability only ever reads stored files.
"""

from __future__ import annotations

import io
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import IO, Any, Literal, Self, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic.json_schema import SkipJsonSchema

from common.capabilities import (
    VALIDATED,
    Context,
    Resources,
    SubmitContext,
    capability,
    validated_before,
)
from common.errors import ApertureError, JobCancelled
from common.objects.ranged import RangedReader
from functions.fitting.packing import merge_fits, pack_fit, unpack_fit
from functions.fitting.spec import FitSpec, resolve_spec

FAN_OUT_TRACES = 50_000  # above this many traces, fit in child jobs of this size
FIT_RESOURCES = Resources(cpu=2, memory_mib=8192, timeout_s=6 * 3600)
# The GPU path holds up to 2^20 traces' arrays on the device; the host keeps the file's
# traces and results.
FIT_GPU_RESOURCES = Resources(cpu=4, memory_mib=32768, gpu="H100", timeout_s=2 * 3600)


def _threads() -> int:
    """Solver threads on the CPU: the cores a fitting job reserves, where they exist."""
    return max(1, min(int(FIT_RESOURCES.cpu), os.cpu_count() or 1))


class FitChoice(BaseModel):
    """The model to fit and a request's overrides of its defaults; shared by the params
    of `fitting`, `fitting.gpu` and `fitting.chunk`.

    Validating resolves the overrides against the model once (:func:`resolve_spec`:
    unknown names, bounds, nothing free are InvalidInput); the resolved spec travels
    with the params as `resolved`, so a job and its chunks rebuild it without resolving
    again (params read back with the `VALIDATED` context keep it; anything sent in is
    resolved afresh).
    """

    model_config = ConfigDict(extra="forbid")

    model_type: str = Field("maturation", description="A model from GET /analysis/models.")
    model_params: dict[str, float] | None = Field(
        None, description="Start values (or values of fixed parameters) by name."
    )
    model_bounds: dict[str, tuple[float, float]] | None = Field(
        None, description="[lower, upper] by parameter name."
    )
    fixed: dict[str, bool] | list[str] | None = Field(
        None, description="Per-name fixed flags, or the complete list of fixed parameters."
    )
    device: Literal["auto", "cpu", "gpu"] = "auto"
    resolved: SkipJsonSchema[dict[str, Any] | None] = Field(
        None, description="The spec the overrides resolve to (FitSpec.as_dict); derived."
    )

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> Self:
        if self.resolved is None or not validated_before(info):
            self.resolved = resolve_spec(
                self.model_type,
                params=self.model_params,
                bounds=self.model_bounds,
                fixed=self.fixed,
            ).as_dict()
        return self

    @property
    def spec(self) -> FitSpec:
        """The resolved spec, rebuilt without resolving again."""
        return FitSpec.from_dict(self.resolved or {})

    def choice(self) -> dict[str, Any]:
        """These fields, resolved spec included, for the params of a related job."""
        return self.model_dump(include=set(FitChoice.model_fields))


class TraceFileOptions(BaseModel):
    time_unit: Literal["h", "min", "s"] | None = Field(
        None, description="Unit of the time column when the file does not say (default h)."
    )


class FittingOptions(TraceFileOptions, FitChoice):
    """What a fitting request chooses, besides the file."""

    chunk_size: int | None = Field(
        None,
        ge=100,
        description="Traces per child job when the file has more. Default: "
        f"{FAN_OUT_TRACES:,} where child jobs get machines of their own, and no child "
        "jobs on local workers (they share the cores one job already uses).",
    )

    def for_file(self, file_id: uuid.UUID) -> FittingParams:
        """The params that fit these options to a stored file (kept as validated)."""
        chosen = self.model_dump(include=set(FittingOptions.model_fields))
        return FittingParams.model_validate({**chosen, "file_id": file_id}, context=VALIDATED)


class FittingParams(FittingOptions):
    file_id: uuid.UUID = Field(
        description="Stored traces file: long CSV (time,fov,cell,value), wide CSV or Parquet."
    )


class FittingResult(BaseModel):
    summary: dict[str, Any]
    results_file_id: uuid.UUID
    parquet_file_id: uuid.UUID
    plots_job_id: uuid.UUID = Field(
        description="The `fitting.plots` child that renders the plots after the results."
    )


class FittingChunkParams(FitChoice):
    chunk_file_id: uuid.UUID = Field(description="npz with t (T,)|(n, T) and y (n, T).")


class FittingChunkResult(BaseModel):
    arrays_file_id: uuid.UUID
    n: int


def _device(requested: str, ctx: Context) -> Literal["cpu", "gpu"]:
    return ctx.device if requested == "auto" else requested  # type: ignore[return-value]


def check_traces_file(params: FittingParams, ctx: SubmitContext) -> FittingParams:
    """Submit-time: the traces file's columns, from its header or Parquet footer (its
    rows are read once, by the job), like `load-traces` would refuse them."""
    from functions.fitting.traces import check_traces_head

    stored = ctx.file(params.file_id)
    with RangedReader(ctx.objects, stored.key, size=stored.size) as head:
        check_traces_head(cast(IO[bytes], head), name=stored.name)
    return params


@capability(
    "fitting",
    params=FittingParams,
    result=FittingResult,
    resources=FIT_RESOURCES,
    check=check_traces_file,
)
def run_fitting(params: FittingParams, ctx: Context) -> FittingResult:
    """Fit a kinetic model to every trace of a traces file; CSV, Parquet, summary (plots
    follow in a `fitting.plots` child)."""
    return _fit_file(params, ctx, _device(params.device, ctx), fan_out=True)


@capability(
    "fitting.gpu",
    params=FittingParams,
    result=FittingResult,
    resources=FIT_GPU_RESOURCES,
    check=check_traces_file,
)
def run_fitting_gpu(params: FittingParams, ctx: Context) -> FittingResult:
    """`fitting` on a GPU (the file's traces in one solve; `device` "cpu" is honoured)."""
    device: Literal["cpu", "gpu"] = "cpu" if params.device == "cpu" else "gpu"
    return _fit_file(params, ctx, device, fan_out=False)


def _fit_file(
    params: FittingParams, ctx: Context, device: Literal["cpu", "gpu"], *, fan_out: bool
) -> FittingResult:
    from functions.fitting.overlap import read_and_fit
    from functions.fitting.traces import read_traces

    spec = params.spec
    stored = ctx.file(params.file_id)
    # the stored object's own file where there is one: parsed from disk, never held whole
    source = ctx.objects.local_path(stored.key) or ctx.objects.get_bytes(stored.key)
    size = _chunk_size(params, ctx) if fan_out else None
    if device == "cpu" and size is None:  # fitted here, while the file is read
        traces, fit = read_and_fit(
            spec,
            source,
            name=stored.name,
            time_unit=params.time_unit,
            threads=_threads(),
            progress=_fit_progress(ctx),
            cancelled=ctx.cancelled,
        )
    else:
        traces = read_traces(source, name=stored.name, time_unit=params.time_unit)
        ctx.progress(0.05, f"{len(traces)} traces read")
        if size is not None and len(traces) > size:
            fit = _fan_out(params, traces, size, ctx)
        else:
            fit = _fit_here(spec, traces, device, ctx)
    ctx.progress(0.9, "writing results")
    return _save_outputs(params, spec, traces, fit, PurePosixPath(stored.name).stem, ctx)


def _fit_progress(ctx: Context) -> Any:
    """`read_and_fit`'s counts as the job's progress: fitting from 5 % to 90 % once the
    file is read (its end logged), the traces fitted so far while it is read."""
    read = [False]

    def progress(fitted: int, total: int | None) -> None:
        if total is None:
            ctx.progress(0.0, f"reading the file; {fitted} traces fitted so far")
            return
        if not read[0]:
            read[0] = True
            ctx.log(f"{total} traces read")
        ctx.progress(0.05 + 0.85 * fitted / max(total, 1), "fitting")

    return progress


@capability(
    "fitting.chunk",
    params=FittingChunkParams,
    result=FittingChunkResult,
    resources=FIT_RESOURCES.model_copy(update={"retries": 1}),
)
def run_fitting_chunk(params: FittingChunkParams, ctx: Context) -> FittingChunkResult:
    """Fit one slice of traces for a `fitting` job and store the per-trace arrays."""
    from functions.fitting.fit import fit_traces

    spec = params.spec
    with np.load(io.BytesIO(ctx.objects.get_bytes(ctx.file(params.chunk_file_id).key))) as z:
        t, y = z["t"], z["y"]
    fit = fit_traces(
        spec,
        t,
        y,
        device=_device(params.device, ctx),
        workers=_threads(),
        progress=lambda f: ctx.progress(f, "fitting"),
        cancelled=ctx.cancelled,
    )
    saved = ctx.save_file(
        "fit-arrays.npz",
        pack_fit(fit),
        kind="fitting-chunk",
        content_type="application/octet-stream",
    )
    return FittingChunkResult(arrays_file_id=saved.id, n=len(fit))


def _chunk_size(params: FittingParams, ctx: Context) -> int | None:
    """Traces per child job (None: no child jobs). Asked for, or by default only where
    children get machines of their own: local workers share this machine's cores, which
    one job's solver threads already keep busy, so children there only add storing and
    loading their slices and waiting for workers."""
    if params.chunk_size is not None:
        return params.chunk_size
    return None if ctx.runtime.settings.executor == "local" else FAN_OUT_TRACES


def _fit_here(spec: FitSpec, traces: Any, device: Literal["cpu", "gpu"], ctx: Context) -> Any:
    """Fit every trace in this job: on the CPU `SLICE_TRACES` at a time (a trace's fit
    does not depend on the others), on a GPU all at once."""
    from functions.fitting.overlap import SLICE_TRACES, fit_slices

    def progress(fitted: int, total: int | None) -> None:
        ctx.progress(0.05 + 0.85 * fitted / max(total or 1, 1), "fitting")

    parts = fit_slices(
        spec,
        traces.t,
        traces.y,
        step=len(traces) if device == "gpu" else SLICE_TRACES,
        device=device,
        threads=_threads(),
        progress=progress,
        cancelled=ctx.cancelled,
    )
    return parts[0] if len(parts) == 1 else merge_fits(parts)


def _fan_out(params: FittingParams, traces: Any, size: int, ctx: Context) -> Any:
    """Store each slice of traces, fit them in child jobs, merge the arrays in order."""
    n = len(traces)
    jobs = []
    for start in range(0, n, size):
        if ctx.cancelled():
            raise JobCancelled()
        stop = min(start + size, n)
        t = traces.t if traces.t.ndim == 1 else traces.t[start:stop]
        buf = io.BytesIO()
        np.savez(buf, t=t, y=traces.y[start:stop])
        chunk = ctx.save_file(
            f"fitting-chunk-{start}.npz",
            buf.getvalue(),
            kind="fitting-chunk",
            content_type="application/octet-stream",
        )
        child = FittingChunkParams.model_validate(
            {**params.choice(), "chunk_file_id": chunk.id}, context=VALIDATED
        )
        jobs.append(ctx.spawn("fitting.chunk", child))
    ctx.log(f"fitting {n} traces in {len(jobs)} child jobs of up to {size}")
    parts = []
    for i, job in enumerate(jobs):
        (outcome,) = ctx.gather([job])
        if outcome.status != "succeeded" or not outcome.result:
            message = (outcome.error or {}).get("message", outcome.status)
            raise ApertureError(
                f"child job {outcome.job_id} (traces from {i * size}) did not succeed: {message}"
            )
        arrays = ctx.file(uuid.UUID(str(outcome.result["arrays_file_id"])))
        parts.append(unpack_fit(ctx.objects.get_bytes(arrays.key)))
        ctx.progress(0.05 + 0.85 * (i + 1) / len(jobs), f"chunk {i + 1}/{len(jobs)} done")
    return merge_fits(parts)


def _save_outputs(
    params: FittingParams, spec: Any, traces: Any, fit: Any, base: str, ctx: Context
) -> FittingResult:
    """Store the results (CSV, Parquet; the summary is the job's result) and what the
    plots need, then start the plots job, which the results route lists once it has
    made them. The files are written side by side (Arrow's writers, hashing and fsync
    leave the GIL); the plots job starts last, so it does not compete with them."""
    from functions.fitting.plot_job import PLOTS, store_plot_inputs
    from functions.fitting.results import results_table, summarize_fit, to_csv, to_parquet

    model = params.model_type
    table = results_table(fit, traces.fov, traces.cell, model)

    def save(suffix: str, encode: Any, content_type: str) -> Any:
        data = encode(table)
        return ctx.save_file(
            f"{base}_{model}_fits.{suffix}", data, content_type=content_type, kind="fit-results"
        )

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fitting-save") as pool:
        csv = pool.submit(save, "csv", to_csv, "text/csv")
        parquet = pool.submit(save, "parquet", to_parquet, "application/vnd.apache.parquet")
        summary = summarize_fit(fit, model)
        plots = store_plot_inputs(ctx, fit, traces, model, f"{base}_{model}")
        csv_file, parquet_file = csv.result(), parquet.result()
    summary["spec"] = spec.as_dict()
    summary["time_units"] = traces.time_unit
    if ctx.cancelled():
        raise JobCancelled()
    plots_job = ctx.spawn(PLOTS, plots)
    ctx.progress(1.0, f"{summary['succeeded']}/{summary['total']} traces fitted")
    return FittingResult(
        summary=summary,
        results_file_id=csv_file.id,
        parquet_file_id=parquet_file.id,
        plots_job_id=plots_job,
    )
