"""Capability `fitting.plots`: the PNG plots of a fit, made after its results are stored.

A `fitting` job stores its results (CSV, Parquet, summary) and succeeds; rendering plots
takes longer than writing them (seconds of matplotlib), so it spawns this child and does
not wait for it. The child gets the fit's arrays and the few example traces
(`example_plots.Examples`) in one npz file, never the traces file. The results route
lists the plots once the child has succeeded (`plots_state`); a plot that fails, or the
whole child failing, is reported there and never touches the fit.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import JobCancelled

PLOTS = "fitting.plots"
PLOT_RESOURCES = Resources(cpu=1, memory_mib=2048, timeout_s=1800)


class FittingPlotsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs_file_id: uuid.UUID = Field(description="npz: the fit's arrays and example traces.")
    model_type: str
    base_name: str = Field(description="Plot files are named `{base_name}_{plot}.png`.")
    time_unit: Literal["h", "min", "s"] = "h"
    examples_error: str | None = Field(
        None, description="Why no example traces could be picked, if they could not."
    )


class FittingPlotsResult(BaseModel):
    plot_file_ids: dict[str, uuid.UUID]
    plot_errors: list[str]


@capability(PLOTS, params=FittingPlotsParams, result=FittingPlotsResult, resources=PLOT_RESOURCES)
def run_fitting_plots(params: FittingPlotsParams, ctx: Context) -> FittingPlotsResult:
    """Render the plots of a `fitting` job's fit (parameter and R² histograms, examples)."""
    from functions.fitting.example_plots import Examples
    from functions.fitting.packing import unpack_fit
    from functions.fitting.plots import plot_set

    data = ctx.objects.get_bytes(ctx.file(params.inputs_file_id).key)
    with np.load(io.BytesIO(data)) as z:
        fit = unpack_fit(z)
        examples = None if params.examples_error else Examples.from_arrays(z)

    def picked() -> Examples:
        if examples is None:
            raise ValueError(params.examples_error)
        return examples

    made = plot_set(fit, picked, params.model_type, time_unit=params.time_unit)
    plots = {}
    for name, png in made.files.items():
        if ctx.cancelled():
            raise JobCancelled()
        plots[name.removesuffix(".png")] = ctx.save_file(
            f"{params.base_name}_{name}", png, content_type="image/png", kind="fit-plot"
        ).id
    for error in made.errors:  # a plot that failed is reported; the fit stands
        ctx.log(f"plot not made: {error}")
    return FittingPlotsResult(plot_file_ids=plots, plot_errors=made.errors)


def store_plot_inputs(
    ctx: Context, fit: Any, traces: Any, model: str, base_name: str
) -> FittingPlotsParams:
    """Store what the plots need of a fit of `traces`: the params of the `fitting.plots`
    child to start (not waited for) once the results are stored."""
    from functions.fitting.example_plots import pick_examples
    from functions.fitting.packing import pack_fit

    error, extra = None, {}
    try:
        extra = pick_examples(fit, traces.t, traces.y, fov=traces.fov, cell=traces.cell).arrays()
    except Exception as exc:  # a plot must never fail the fit it shows
        error = f"{type(exc).__name__}: {exc}"
    inputs = ctx.save_file(
        f"{base_name}_plot-inputs.npz",
        pack_fit(fit, **extra),
        content_type="application/octet-stream",
        kind="fitting-plot-inputs",
    )
    return FittingPlotsParams(
        inputs_file_id=inputs.id,
        model_type=model,
        base_name=base_name,
        time_unit=traces.time_unit,
        examples_error=error,
    )


@dataclass(frozen=True)
class PlotsState:
    """Where a fit's plots stand: "pending" (the plots job has not ended), "ready" (its
    plots, and the errors of any it could not make) or "failed" (the job did not
    succeed: `errors` says why)."""

    status: Literal["pending", "ready", "failed"]
    plots: dict[str, uuid.UUID] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def plots_state(result: dict[str, Any], plots_job: Any | None) -> PlotsState:
    """The plots of a succeeded `fitting` job from its `result` and its plots job's
    record (status, result, error; None when the result names no plots job).

    A result written before plots had a job of their own lists them itself."""
    if "plot_file_ids" in result:
        ids = {k: uuid.UUID(str(v)) for k, v in result["plot_file_ids"].items()}
        return PlotsState("ready", ids, list(result.get("summary", {}).get("plot_errors", [])))
    if plots_job is None:
        return PlotsState("failed", errors=["the plots job of this fit no longer exists"])
    status = getattr(plots_job.status, "value", plots_job.status)
    if status == "succeeded" and plots_job.result:
        made = FittingPlotsResult.model_validate(plots_job.result)
        return PlotsState("ready", dict(made.plot_file_ids), list(made.plot_errors))
    if status in ("failed", "cancelled", "succeeded"):
        why = plots_job.error.message if plots_job.error else status
        return PlotsState("failed", errors=[f"plots job {plots_job.id} {status}: {why}"])
    return PlotsState("pending")
