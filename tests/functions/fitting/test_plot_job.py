"""Where a fit's plots stand, from its result and its `fitting.plots` job's record; and
the example traces a plots job is given, through the npz that carries them."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from common.jobs.models import JobRecord
from functions.fitting.example_plots import Examples, draw_examples, pick_examples
from functions.fitting.fit import fit_traces
from functions.fitting.packing import merge_fits, pack_fit, unpack_fit
from functions.fitting.plot_job import PlotsState, plots_state
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces

PLOT = uuid.UUID(int=7)


def _plots_job(status: str, result: dict[str, Any] | None = None, error: str | None = None):
    now = datetime.now(UTC)
    return JobRecord(
        id=uuid.UUID(int=3),
        owner_id=None,
        function="fitting.plots",
        name=None,
        tags=[],
        params={},
        status=status,
        progress=0.0,
        progress_message=None,
        result=result,
        error={"type": "internal", "message": error} if error else None,
        attempts=1,
        max_attempts=1,
        parent_id=uuid.UUID(int=2),
        executor="local",
        handle=None,
        heartbeat_at=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        updated_at=now,
    )


@pytest.mark.parametrize("status", ["queued", "running", "cancelling"])
def test_plots_are_pending_until_their_job_ends(status: str) -> None:
    state = plots_state({"plots_job_id": "x"}, _plots_job(status))
    assert state.status == "pending" and state.plots == {} and state.errors == []


def test_plots_are_listed_once_made_with_the_errors_of_those_that_were_not() -> None:
    made = {"plot_file_ids": {"r_squared": str(PLOT)}, "plot_errors": ["examples.png: boom"]}
    state = plots_state({"plots_job_id": "x"}, _plots_job("succeeded", made))
    assert state.status == "ready" and state.plots == {"r_squared": PLOT}
    assert state.errors == ["examples.png: boom"]


def test_a_plots_job_that_did_not_succeed_is_reported_not_raised() -> None:
    state = plots_state({"plots_job_id": "x"}, _plots_job("failed", error="MemoryError"))
    assert state.status == "failed" and state.plots == {}
    assert "failed: MemoryError" in state.errors[0]
    assert plots_state({"plots_job_id": "x"}, None).status == "failed"


def test_results_from_before_plots_had_a_job_list_their_own() -> None:
    old = {"plot_file_ids": {"examples": str(PLOT)}, "summary": {"plot_errors": []}}
    assert plots_state(old, None) == PlotsState("ready", {"examples": PLOT}, [])


def test_examples_travel_in_the_plot_inputs_and_draw_alike() -> None:
    s = synthetic_traces("maturation", n=40, n_times=30, missing=0.1, ragged=True, seed=3)
    fov, cell = s.fov + 2, np.array([f"cell_{c}" for c in s.cell], dtype=object)
    fit = fit_traces(resolve_spec("maturation"), s.t, s.y)
    picked = pick_examples(fit, s.t, s.y, fov=fov, cell=cell)
    with np.load(io.BytesIO(pack_fit(fit, **picked.arrays()))) as z:
        back, examples = unpack_fit(z), Examples.from_arrays(z)
    np.testing.assert_array_equal(back.params, fit.params)
    assert [label for label, _ in examples.groups] == ["best ", "median ", "worst "]
    for (_, a), (_, b) in zip(picked.groups, examples.groups, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(examples.y, s.y[picked.rows])

    def titles(fig: Any) -> list[str]:
        return [ax.get_title() for ax in fig.axes if ax.get_visible()]

    assert titles(draw_examples(back, examples, "maturation")) == titles(
        draw_examples(fit, picked, "maturation")
    )
    assert titles(draw_examples(fit, picked, "maturation"))[0].startswith("fov 2, cell_")


def test_fits_of_slices_merge_to_the_fit_of_the_whole() -> None:
    """What a job relies on to fit a big file a slice at a time (and a fan-out in
    chunks): a trace's fit does not depend on the traces beside it, to the bit."""
    s = synthetic_traces("maturation", n=90, n_times=60, missing=0.05, seed=6)
    spec = resolve_spec("maturation")
    whole = fit_traces(spec, s.t, s.y)
    merged = merge_fits([fit_traces(spec, s.t, s.y[a : a + 40]) for a in range(0, 90, 40)])
    for name in ("params", "stderr", "ss_res", "r_squared", "status", "lower", "upper"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
