"""Read a traces file and fit it on the CPU at once: the traces a streamed CSV has
completed are fitted while the rest is parsed.

Arrow parses a streamed CSV on about one core (`trace_files.csv_batches`); the fit
takes the other meanwhile, one solver thread on slices of the traces read so far, and
every core once the file is read. A trace's fit depends on its own data and time axis
alone, so fitting in slices gives the same result as one solve. Where the file is not
in the merge step's layout (it is read whole, `traces.read_traces`), nothing was fitted
early and every trace is fitted after the read, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from common.errors import JobCancelled
from functions.fitting.fit import FitArrays, fit_traces
from functions.fitting.packing import merge_fits
from functions.fitting.spec import FitSpec
from functions.fitting.traces import Traces, read_traces

# Traces a slice fitted during the read holds at least (fewer fits cost more per trace)
# and at most (the solver's temporaries stay a few hundred MB whatever the file's size).
EARLY_SLICE = 8_192
SLICE_TRACES = 50_000


class _Published:
    """The traces a reading thread has completed so far, for the fitting thread."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.t: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.traces: Traces | None = None
        self.error: BaseException | None = None
        self.stop = False  # the fit gave up: the reader stops at its next batch

    def publish(self, t: np.ndarray, y: np.ndarray) -> None:
        if self.stop:
            raise JobCancelled()
        with self.changed:
            self.t, self.y = t, y
            self.changed.notify()

    def read(self, source: bytes | Path, name: str, time_unit: str | None) -> None:
        try:
            traces = read_traces(source, name=name, time_unit=time_unit, on_traces=self.publish)
        except BaseException as exc:  # handed to the fitting thread
            traces, self.error = None, exc
        with self.changed:
            self.traces = traces
            self.changed.notify()

    @property
    def finished(self) -> bool:
        return self.traces is not None or self.error is not None

    def count(self) -> int:
        return 0 if self.y is None else int(self.y.shape[0])


def read_and_fit(
    spec: FitSpec,
    source: bytes | Path,
    *,
    name: str,
    time_unit: str | None,
    threads: int,
    progress: Callable[[int, int | None], None],
    cancelled: Callable[[], bool],
) -> tuple[Traces, FitArrays]:
    """The file's traces and their fit on the CPU (see the module docstring).
    `progress(fitted, total)` gets how many traces are fitted, of how many (None
    while the file is being read)."""
    shared = _Published()
    reader = threading.Thread(
        target=shared.read, args=(source, name, time_unit), name="fitting-read", daemon=True
    )
    reader.start()
    try:
        parts, done = _fit_while_reading(spec, shared, progress, cancelled)
    finally:
        shared.stop = True  # a reader still going (the fit failed) stops soon
        reader.join()
    if shared.error is not None:
        raise shared.error
    traces = shared.traces
    assert traces is not None
    if done and not (shared.y is not None and np.shares_memory(traces.y, shared.y)):
        parts, done = [], 0  # read another way after all: the early fits do not apply
    progress(done, len(traces))
    parts += fit_slices(
        spec,
        traces.t,
        traces.y,
        start=done,
        threads=threads,
        progress=progress,
        cancelled=cancelled,
    )
    fit = parts[0] if len(parts) == 1 else merge_fits(parts)
    return traces, fit


def _fit_while_reading(
    spec: FitSpec,
    shared: _Published,
    progress: Callable[[int, int | None], None],
    cancelled: Callable[[], bool],
) -> tuple[list[FitArrays], int]:
    """Fit slices of `EARLY_SLICE` or more of the completed traces on one thread until
    the read ends; the fits and how many traces they hold."""
    parts: list[FitArrays] = []
    done = 0
    while True:
        with shared.changed:
            while not shared.finished and shared.count() - done < EARLY_SLICE:
                shared.changed.wait(0.2)
                if cancelled():
                    raise JobCancelled()
            if shared.finished:
                return parts, done
            t, y = shared.t, shared.y
        assert t is not None and y is not None
        stop = min(y.shape[0], done + SLICE_TRACES)
        parts.append(_fit_slice(spec, t, y, done, stop, 1, None, cancelled))
        done = stop
        progress(done, None)


def fit_slices(
    spec: FitSpec,
    t: np.ndarray,
    y: np.ndarray,
    *,
    start: int = 0,
    step: int | None = None,
    device: Literal["cpu", "gpu"] = "cpu",
    threads: int,
    progress: Callable[[int, int | None], None] | None,
    cancelled: Callable[[], bool],
) -> list[FitArrays]:
    """Fit traces `start:` of `y`, `step` at a time (a trace's fit depends on its own data
    and time axis alone, so the slices' fits are the whole's); `progress(fitted, total)`
    counts against all of `y`'s traces. `step` defaults to `SLICE_TRACES`."""
    n = int(y.shape[0])
    step = SLICE_TRACES if step is None else step
    return [
        _fit_slice(spec, t, y, lo, min(lo + step, n), threads, progress, cancelled, device)
        for lo in range(start, n, max(step, 1))
    ]


def _fit_slice(
    spec: FitSpec,
    t: np.ndarray,
    y: np.ndarray,
    start: int,
    stop: int,
    threads: int,
    progress: Callable[[int, int | None], None] | None,
    cancelled: Callable[[], bool],
    device: Literal["cpu", "gpu"] = "cpu",
) -> FitArrays:
    """Fit traces `start:stop` of `y` (and of `t` where each trace has its own time axis);
    `progress` (when given) counts them against all of `y`'s traces."""

    def report(fraction: float) -> None:
        if progress is not None:
            progress(start + int(fraction * (stop - start)), int(y.shape[0]))

    return fit_traces(
        spec,
        t if t.ndim == 1 else t[start:stop],
        y[start:stop],
        device=device,
        workers=threads,
        progress=report,
        cancelled=cancelled,
    )
