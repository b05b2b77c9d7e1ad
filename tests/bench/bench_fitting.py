"""Batched trace fitting against the field's per-trace `scipy.optimize.least_squares` loop.

    uv run python tests/bench/bench_fitting.py [--traces 10000] [--reference 500]
        [--workers 0] [--rounds 3] [--gpu-traces 1000000]
    uv run python tests/bench/bench_fitting.py --e2e [--e2e-traces 3000,100000]

Data: synthetic `maturation` traces (180 points, 10-minute frames, 2 % noise) with known
parameters (`functions.fitting.synthetic`). In one run:

- aperture: `fit_traces` on all traces on the CPU (default start, bounds; multi-start on),
  on one thread ("ratio", against the one-core reference) and, with `--workers 0`, also
  with one thread per core ("ratio_all_cores"). With one thread the ratio is also given
  in CPU seconds of the process ("ratio_cpu_time"), which other load on the machine
  distorts less than wall time.
- reference: `least_squares` (method "trf", 2-point Jacobian: the usual practice) with
  the same model, bounds and start, one call per trace, on an evenly spaced subsample,
  its rate scaled to fits/s. The residual is the plain textbook formula in numpy.
- parity, on the subsample where the reference converged: the fraction of traces where
  our SS_res <= reference x (1 + 1e-6), where parameters agree within 1e-3 relative,
  and where either holds (the acceptance criterion). Goal: ratio >= 100, parity 1.0.
- timing: `--rounds` rounds alternate the two sides and each side keeps its fastest
  round; one BLAS thread for both.
- gpu (where cupy sees a device): fits/s for `--gpu-traces` traces, host arrays in and
  out (best of the second and third call; the first is reported too), goal >= 10^6 on
  an H100; and the share of the first 2,000 traces whose cost equals the CPU fit's
  within 1e-6 relative.

With `--e2e`, what the user waits for instead, through the HTTP API of `aperture serve`
(a child process, its default two workers, `tests.support.app.LiveServer`): the traces
as the merge step writes them (long CSV, minutes) are uploaded, `POST
/analysis/fitting/start` starts the fit, and once it has succeeded the results CSV is
downloaded; the clock runs from the upload's first byte to the CSV's last. The end of
the job is waited for as the project's client (`client.jobs`) waits: on the job's
Server-Sent Events, which the server reads from the database every 0.1 s. A small fit
first warms the workers. The reference is the same scipy loop over the same traces,
timed in this process while the server idles: every trace up to `--e2e-full-reference`
traces, above that the `--reference` subsample, scaled.
Reported beside it, not in the clock: when the plots (made by a `fitting.plots` child
after the results) were listed, the longest gap between the fitting job's heartbeats
(read from the server's SQLite file; they are written every 0.5 s, so a gap of seconds
means a GIL held that long) and the workers' peak resident memory.

Prints one JSON line per measurement.
"""

from __future__ import annotations

import os

# One BLAS thread: both sides are measured on one core (the batched fit's start
# screen uses one matrix product; least_squares uses LAPACK on small matrices).
# (Not for the server of --e2e, which runs as a user starts it.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from httpx_sse import connect_sse

from common.arrays import gpu_available
from functions.fitting.fit import FitArrays, fit_traces
from functions.fitting.reference import ReferenceFit, parity
from functions.fitting.spec import FitSpec, resolve_spec
from functions.fitting.synthetic import synthetic_traces, to_long_csv
from tests.bench.http_upload import upload


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def textbook_maturation(t: np.ndarray, p: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The maturation model as a per-trace script writes it (fitted t0, ktl, delta, offset)."""
    t0, ktl, delta, offset = p
    km, beta, scale = fixed
    dt = t - t0
    b = beta - delta
    bracket = (
        np.exp(-(beta + km) * dt) / (b + km)
        - np.exp(-beta * dt) / b
        + km * np.exp(-delta * dt) / (b * (b + km))
    )
    return scale * (ktl * bracket * (dt > 0) + offset)


def reference_loop(spec: FitSpec, t: np.ndarray, y: np.ndarray) -> tuple[ReferenceFit, float]:
    from scipy.optimize import least_squares

    spec = spec.for_times(t)  # the bounds and start the batched fit uses on this axis
    free = spec.free
    fixed = spec.start[~free]
    lower, upper, x0 = spec.lower[free], spec.upper[free], spec.start[free]
    n = y.shape[0]
    params = np.tile(spec.start, (n, 1))
    ss = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        for i in range(n):
            yi = y[i]
            res = least_squares(
                lambda p, yi=yi: textbook_maturation(t, p, fixed) - yi, x0, bounds=(lower, upper)
            )
            params[i, free] = res.x
            ss[i] = 2.0 * res.cost
            ok[i] = res.status > 0
    return ReferenceFit(params, ss, ok), time.perf_counter() - start


def subset(fit: FitArrays, rows: np.ndarray) -> FitArrays:
    fields = (
        "params",
        "stderr",
        "ss_res",
        "r_squared",
        "n_points",
        "iterations",
        "status",
        "lower",
        "upper",
    )
    return FitArrays(
        names=fit.names,
        free=fit.free,
        device=fit.device,
        **{k: getattr(fit, k)[rows] for k in fields},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=180)
    parser.add_argument("--reference", type=int, default=500)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="CPU threads for the batched fit; 0: also run with all cores",
    )
    parser.add_argument("--gpu-traces", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="timing rounds; each side keeps its fastest"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--e2e", action="store_true", help="through the HTTP API instead")
    parser.add_argument("--e2e-traces", default="3000,100000", help="comma-separated sizes")
    parser.add_argument("--e2e-full-reference", type=int, default=3000)
    args = parser.parse_args()
    if args.e2e:
        end_to_end(args)
        return

    spec = resolve_spec("maturation")
    data = synthetic_traces(
        "maturation", n=args.traces, n_times=args.points, noise=0.02, seed=args.seed
    )
    fit_traces(spec, data.t, data.y[:64])  # imports and caches out of the timing

    def timed(workers: int) -> tuple[FitArrays, float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        fit = fit_traces(spec, data.t, data.y, workers=workers)
        return fit, time.perf_counter() - start, time.process_time() - cpu

    rows = np.linspace(0, args.traces - 1, min(args.reference, args.traces)).astype(int)
    # Rounds alternate both sides, and each keeps its fastest round: on a shared
    # machine, load from others only ever adds time.
    ours_s = ours_cpu = ref_s = ref_cpu = float("inf")
    for _ in range(args.rounds):
        ours, wall, cpu_s = timed(max(args.workers, 1))
        ours_s, ours_cpu = min(ours_s, wall), min(ours_cpu, cpu_s)
        cpu = time.process_time()
        ref, wall = reference_loop(spec, data.t, data.y[rows])
        ref_s, ref_cpu = min(ref_s, wall), min(ref_cpu, time.process_time() - cpu)
    workers_one = max(args.workers, 1) == 1
    ours_rate = args.traces / ours_s
    cores = os.cpu_count() or 1
    all_cores_rate = None
    if args.workers == 0 and cores > 1:
        _, all_s, _ = timed(cores)
        all_cores_rate = args.traces / all_s

    ref_rate = rows.size / ref_s
    agreement = parity(subset(ours, rows), ref)
    emit(
        bench="fitting",
        measure="cpu",
        model="maturation",
        traces=args.traces,
        points=args.points,
        workers=max(args.workers, 1),
        cpu_count=cores,
        aperture_fits_per_s=round(ours_rate, 1),
        aperture_seconds=round(ours_s, 3),
        reference="scipy.optimize.least_squares per trace (trf, 2-point jac), "
        f"{rows.size}-trace subsample, scaled",
        reference_fits_per_s=round(ref_rate, 1),
        reference_ms_per_fit=round(1e3 / ref_rate, 3),
        ratio=round(ours_rate / ref_rate, 1),
        goal_ratio=100,
        # the same in CPU seconds of this process, less sensitive to other load
        ratio_cpu_time=round((args.traces / ours_cpu) / (rows.size / ref_cpu), 1)
        if workers_one
        else None,
        aperture_all_cores_fits_per_s=round(all_cores_rate, 1) if all_cores_rate else None,
        ratio_all_cores=round(all_cores_rate / ref_rate, 1) if all_cores_rate else None,
        parity_cost_rate=agreement["cost_rate"],
        parity_params_rate=agreement["params_rate"],
        parity_either_rate=agreement["either_rate"],
        parity_compared=agreement["compared"],
        success_rate=float(ours.success.mean()),
        median_iterations=float(np.median(ours.iterations)),
        median_r_squared=float(np.median(ours.r_squared)),
    )

    if gpu_available() and args.gpu_traces > 0:
        big = synthetic_traces(
            "maturation", n=args.gpu_traces, n_times=args.points, noise=0.02, seed=args.seed + 1
        )
        # Every call starts from host arrays and ends with host results: the transfers
        # are timed. The first call in a process also compiles kernels and grows the
        # memory pool; a worker that fits many requests pays that once.
        times = []
        for _ in range(3):
            start = time.perf_counter()
            gpu = fit_traces(spec, big.t, big.y, device="gpu")
            times.append(time.perf_counter() - start)
        gpu_s = min(times[1:])
        checked = min(2000, args.gpu_traces)
        on_cpu = fit_traces(spec, big.t, big.y[:checked])
        agree = np.isclose(gpu.ss_res[:checked], on_cpu.ss_res, rtol=1e-6, atol=0)
        emit(
            bench="fitting",
            measure="gpu",
            model="maturation",
            traces=args.gpu_traces,
            points=args.points,
            gpu_fits_per_s=round(args.gpu_traces / gpu_s, 1),
            gpu_seconds=round(gpu_s, 3),
            goal_fits_per_s=1_000_000,
            first_call_seconds=round(times[0], 3),
            first_call_fits_per_s=round(args.gpu_traces / times[0], 1),
            cpu_fits_per_s=round(ours_rate, 1),
            ratio_vs_reference=round(args.gpu_traces / gpu_s / ref_rate, 1),
            success_rate=float(gpu.success.mean()),
            median_iterations=float(np.median(gpu.iterations)),
            cpu_cost_agreement_rate=float(agree.mean()),
        )


# --- end to end through the HTTP API ----------------------------------------------------

API = "/api/v1/analysis"


def _fit_over_http(client: httpx.Client, path: Path, database: Path) -> dict[str, Any]:
    """Upload → start → poll → download the results CSV; seconds of each step."""
    start = time.perf_counter()
    file_id = str(upload(client, path, "text/csv")["id"])
    uploaded = time.perf_counter()
    started = client.post(f"{API}/fitting/start", json={"file_id": file_id})
    if started.status_code not in (200, 201, 202):
        raise RuntimeError(f"start failed: {started.status_code} {started.text[:500]}")
    job_id = started.json()["job_id"]
    heartbeats = _Heartbeats(database, job_id)
    _wait_for_end(client, job_id)
    heartbeats.stop()
    status = client.get(f"{API}/fitting/status/{job_id}").json()
    if status["status"] != "succeeded":
        raise RuntimeError(f"fitting job {job_id} {status['status']}: {status['error']}")
    succeeded = time.perf_counter()
    results = client.get(f"{API}/fitting/results/{job_id}", params={"limit": 1}).json()
    csv = client.get(f"/api/v1/files/{results['results_file_id']}/download")
    if csv.status_code != 200:
        raise RuntimeError(f"results download failed: {csv.status_code}")
    done = time.perf_counter()
    while results["plots_status"] == "pending":  # not in the clock: results came first
        time.sleep(0.05)
        results = client.get(f"{API}/fitting/results/{job_id}", params={"limit": 1}).json()
    return {
        "seconds": done - start,
        "upload_s": uploaded - start,
        "start_to_succeeded_s": succeeded - uploaded,
        "results_download_s": done - succeeded,
        "plots_after_succeeded_s": time.perf_counter() - succeeded,
        "plots_status": results["plots_status"],
        "max_heartbeat_gap_s": heartbeats.max_gap,
        "job_steps_s": _job_steps(client, job_id),
        "summary": results["summary"],
        "csv_rows": csv.content.count(b"\n") - 1,
    }


def _wait_for_end(client: httpx.Client, job_id: str) -> None:
    """Until the job has ended, as the project's client waits for a job: on its
    Server-Sent Events (`GET /jobs/{id}/events`), whose stream ends after the final
    status (the server reads new events every `web.hub.POLL_S`)."""
    with connect_sse(client, "GET", f"/api/v1/jobs/{job_id}/events") as events:
        for sse in events.iter_sse():
            if sse.event == "status" and json.loads(sse.data)["status"] in TERMINAL:
                return


TERMINAL = ("succeeded", "failed", "cancelled")


class _Heartbeats:
    """The longest gap between successive heartbeats of a job, from the server's SQLite
    file (read-only; the API does not show heartbeats), looked at every 20 ms on a
    thread of its own until `stop`."""

    def __init__(self, database: Path, job_id: str) -> None:
        import sqlite3

        self.db = sqlite3.connect(
            f"file:{database}?mode=ro", uri=True, timeout=5, check_same_thread=False
        )
        self.job = uuid.UUID(job_id).hex
        self.last: datetime | None = None
        self.max_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.look()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.look()

    def look(self) -> None:
        row = self.db.execute("SELECT heartbeat_at FROM jobs WHERE id = ?", (self.job,)).fetchone()
        if not row or not row[0]:
            return
        beat = datetime.fromisoformat(str(row[0]))
        if self.last is not None and beat != self.last:
            self.max_gap = round(max(self.max_gap, (beat - self.last).total_seconds()), 3)
        self.last = beat


def _peak_rss_mib(server: Any) -> float:
    """The largest peak resident memory of the server's worker processes (its process
    group, the web process itself left out)."""
    group, peak = server.process.pid, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == group:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != group:  # the process group
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return round(peak / 1024, 1)


def _job_steps(client: httpx.Client, job_id: str) -> dict[str, float | None]:
    """Where the job's time went, from its record and event log (to the 0.2 s its
    progress writes are throttled to): waiting for a worker, reading the traces (with
    the fit of those read so far, where the file is streamed), fitting (the rest),
    then writing CSV, Parquet and summary and starting the plots job."""
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    events = client.get(f"/api/v1/jobs/{job_id}/logs").json()

    def at(value: str | None) -> float | None:
        return datetime.fromisoformat(value).timestamp() if value else None

    def last(step: Callable[[str], bool]) -> float | None:
        # progress writes are throttled to one per 0.2 s: the last one seen of a step
        times = [at(e["created_at"]) for e in events if step(e["message"] or "")]
        return max((v for v in times if v is not None), default=None)

    created, started, finished = (at(job[k]) for k in ("created_at", "started_at", "finished_at"))
    read = last(lambda m: m.endswith("traces read"))
    fitted = last(lambda m: m.startswith(("fitting", "chunk", "writing results")))
    marks = [created, started, read, fitted, finished]
    names = ("queued", "read", "fit", "outputs")
    return {
        name: round(b - a, 3) if a is not None and b is not None else None
        for name, a, b in zip(names, marks, marks[1:], strict=False)
    }


def end_to_end(args: argparse.Namespace) -> None:
    from tests.support.app import LiveServer, register

    spec = resolve_spec("maturation")
    sizes = [int(v) for v in args.e2e_traces.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # OpenBLAS's own default, one thread per core, as for a user's `aperture serve`
        server = LiveServer(work / "data", env={"OPENBLAS_NUM_THREADS": str(os.cpu_count())})
        server.start()
        try:
            with server.client() as anonymous:
                headers = register(anonymous)
            with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
                warm = work / "warm.csv"
                warm.write_bytes(to_long_csv(synthetic_traces(n=200, seed=99), time_unit="min"))
                _fit_over_http(client, warm, work / "data" / "aperture.db")
                for n in sizes:
                    _e2e_size(args, client, server, spec, work, n)
        finally:
            server.stop()


def _e2e_size(
    args: argparse.Namespace, client: httpx.Client, server: Any, spec: FitSpec, work: Path, n: int
) -> None:
    data = synthetic_traces("maturation", n=n, n_times=args.points, noise=0.02, seed=args.seed)
    path = work / f"traces-{n}.csv"
    path.write_bytes(to_long_csv(data, time_unit="min"))
    load = os.getloadavg()
    ours = _fit_over_http(client, path, work / "data" / "aperture.db")
    if ours["csv_rows"] != n:
        raise RuntimeError(f"results CSV has {ours['csv_rows']} rows for {n} traces")
    full = n <= args.e2e_full_reference
    rows = np.arange(n) if full else np.linspace(0, n - 1, args.reference).astype(int)
    _, ref_s = reference_loop(spec, data.t, data.y[rows])
    reference_s = ref_s * n / rows.size
    summary = ours["summary"]
    emit(
        bench="fitting",
        measure="e2e_http",
        model="maturation",
        traces=n,
        points=args.points,
        file_mib=round(path.stat().st_size / 2**20, 1),
        server_workers=2,
        cpu_count=os.cpu_count(),
        load_avg_1min_before=round(load[0], 2),
        aperture_seconds=round(ours["seconds"], 3),
        upload_s=round(ours["upload_s"], 3),
        start_to_succeeded_s=round(ours["start_to_succeeded_s"], 3),
        results_download_s=round(ours["results_download_s"], 3),
        job_steps_s=ours["job_steps_s"],
        reference="scipy.optimize.least_squares per trace (trf, 2-point jac), "
        + ("every trace" if full else f"{rows.size}-trace subsample, scaled"),
        reference_seconds=round(reference_s, 3),
        reference_ms_per_fit=round(1e3 * ref_s / rows.size, 3),
        ratio=round(reference_s / ours["seconds"], 2),
        goal_ratio=20,
        success_rate=round(summary["succeeded"] / summary["total"], 4),
        median_r_squared=summary["r_squared"]["median"],
        plots_after_succeeded_s=round(ours["plots_after_succeeded_s"], 3),
        plots_status=ours["plots_status"],
        plot_errors=len(summary.get("plot_errors", [])),
        max_heartbeat_gap_s=ours["max_heartbeat_gap_s"],
        worker_peak_rss_mib=_peak_rss_mib(server),
    )
    path.unlink()


if __name__ == "__main__":
    main()
