"""Kinetic-model fitting of single-cell traces, all traces of a request at once.

Public entry points: `list_models` / `get_model` (the model registry), `read_traces` /
`summarize_traces` (load-traces), `resolve_spec` + `fit_traces` (the batched solver),
`results_table` / `summarize_fit` (outputs), `load_results` + `results_page` (paginated
results from the Parquet artefact), `plots_state` (a fit's plots, made by a child job).
Importing the package registers the `fitting`, `fitting.chunk`, `fitting.gpu` and
`fitting.plots` capabilities.
"""

from functions.fitting import capability as capability
from functions.fitting.fit import FitArrays, fit_traces
from functions.fitting.models import MODELS, Model, Parameter, get_model, list_models
from functions.fitting.plot_job import PlotsState, plots_state
from functions.fitting.results import load_results, results_page, results_table, summarize_fit
from functions.fitting.solver import SolverOptions
from functions.fitting.spec import FitSpec, resolve_spec
from functions.fitting.trace_summary import summarize_traces
from functions.fitting.traces import Traces, read_traces

__all__ = [
    "MODELS",
    "FitArrays",
    "FitSpec",
    "Model",
    "Parameter",
    "PlotsState",
    "SolverOptions",
    "Traces",
    "capability",
    "fit_traces",
    "get_model",
    "list_models",
    "load_results",
    "plots_state",
    "read_traces",
    "resolve_spec",
    "results_page",
    "results_table",
    "summarize_fit",
    "summarize_traces",
]
