"""Job machinery speed: a no-op capability through the HTTP API on the local executor.

Measures, against `aperture serve` (2 workers) on a fresh SQLite data dir:
- submit -> terminal latency of one job at a time: from the server's own timestamps
  (created_at -> finished_at) and as a client sees it (POST, then SSE until the end);
- throughput: jobs/s for a burst of concurrent submissions, until all are terminal;
- submit -> running (created_at -> started_at) p50 and p99 of no-op jobs submitted one at
  a time, and of fan-out children: parents (`test.fanout`, 2 children each, one after
  another) whose children start while the parent waits in `gather`, so a child needs a
  worker beyond the two busy ones. The first parent's children are reported apart: they
  are the ones a cold pool makes wait for a process to spawn. Goal: children p50 <= 50 ms.
References measured in the same run: one HTTP round trip to /api/v1/health on the same
server, and one round trip through a bare `ProcessPoolExecutor` (spawn, 2 workers): the
floors of "talk to the server" and "hand work to another process".

Run: uv run python tests/bench/bench_jobs.py [--jobs 100] [--burst 500] [--parents 20]
     [--server-repo DIR]   (serve another checkout: the code before a change)
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.app import REPO, LiveServer, register, wait_for_job


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _noop() -> None:
    return None


def _process_pool_round_trip_ms(n: int) -> float:
    with ProcessPoolExecutor(2) as pool:
        pool.submit(_noop).result()  # start the workers first
        times = []
        for _ in range(n):
            start = time.perf_counter()
            pool.submit(_noop).result()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _health_round_trip_ms(client: httpx.Client, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.get("/api/v1/health").raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _sequential(client: httpx.Client, n: int) -> tuple[list[float], list[float]]:
    """(server-side ms, client-observed ms) for n jobs run one after another."""
    server, observed = [], []
    for _ in range(n):
        start = time.perf_counter()
        job = client.post("/api/v1/jobs", json={"function": "noop", "tags": ["seq"]}).json()
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
            for _line in stream.iter_lines():
                pass  # the stream ends after the final status
        observed.append((time.perf_counter() - start) * 1000)
        done = client.get(f"/api/v1/jobs/{job['id']}").json()
        if done["status"] != "succeeded":
            raise RuntimeError(f"job ended {done['status']}")
        created = datetime.fromisoformat(done["created_at"])
        finished = datetime.fromisoformat(done["finished_at"])
        server.append((finished - created).total_seconds() * 1000)
    return server, observed


def _ms_between(job: dict[str, object], start: str, end: str) -> float:
    first = datetime.fromisoformat(str(job[start]))
    return (datetime.fromisoformat(str(job[end])) - first).total_seconds() * 1000


def _start_latency(client: httpx.Client, n: int) -> list[float]:
    """created_at -> started_at (ms) of `n` no-op jobs, one at a time."""
    waits = []
    for _ in range(n):
        job = client.post("/api/v1/jobs", json={"function": "noop", "tags": ["start"]}).json()
        done = wait_for_job(client, job["id"])
        waits.append(_ms_between(done, "created_at", "started_at"))
    return waits


def _fan_out(client: httpx.Client, parents: int) -> list[list[float]]:
    """Per parent, its children's created_at -> started_at (ms)."""
    waits = []
    for _ in range(parents):
        params = {"children": 2, "seconds": 0.2}
        job = client.post("/api/v1/jobs", json={"function": "test.fanout", "params": params})
        done = wait_for_job(client, job.json()["id"], timeout=120)
        if done["status"] != "succeeded":
            raise RuntimeError(f"fan-out parent ended {done['status']}: {done['error']}")
        children = [client.get(f"/api/v1/jobs/{c}").json() for c in done["result"]["children"]]
        waits.append([_ms_between(c, "created_at", "started_at") for c in children])
    return waits


def _line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def _burst(url: str, n: int, headers: dict[str, str]) -> float:
    """Jobs per second from the first submission until all n are terminal."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=limits, headers=headers
    ) as client:
        start = time.perf_counter()
        responses = await asyncio.gather(
            *[
                client.post("/api/v1/jobs", json={"function": "noop", "tags": ["burst"]})
                for _ in range(n)
            ]
        )
        if any(r.status_code != 202 for r in responses):
            raise RuntimeError("a submission was refused")
        while True:
            stats = (await client.get("/api/v1/jobs/stats", params={"tag": "burst"})).json()
            if stats["by_status"]["succeeded"] + stats["by_status"]["failed"] >= n:
                return n / (time.perf_counter() - start)
            await asyncio.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--parents", type=int, default=20)
    parser.add_argument("--server-repo", type=Path, help="serve this checkout instead")
    args = parser.parse_args()
    pool_ms = _process_pool_round_trip_ms(200)
    server_label = "base" if args.server_repo else "this checkout"
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(
            Path(tmp) / "data",
            env={"APERTURE_LOG_LEVEL": "WARNING"},
            repo=args.server_repo or REPO,
        )
        server.start(workers=2, web_workers=None)
        try:
            with server.client() as client:
                headers = register(client)
                client.headers.update(headers)
                fan_out = _fan_out(client, args.parents)  # first: the pool is as started
                _sequential(client, 10)  # warm up
                health_ms = _health_round_trip_ms(client, 200)
                server_ms, observed_ms = _sequential(client, args.jobs)
                start_ms = _start_latency(client, args.jobs)
            jobs_per_s = asyncio.run(_burst(server.url, args.burst, headers))
        finally:
            server.stop()
    p50 = statistics.median(server_ms)
    _line(
        bench="jobs", server=server_label, capability="noop", executor="local", workers=2,
        database="sqlite", jobs=args.jobs, burst=args.burst,
        latency_p50_ms=round(p50, 2), latency_p99_ms=round(_pct(server_ms, 0.99), 2),
        observed_p50_ms=round(statistics.median(observed_ms), 2),
        observed_p99_ms=round(_pct(observed_ms, 0.99), 2),
        jobs_per_s=round(jobs_per_s, 1),
        reference="http_health_round_trip", reference_p50_ms=round(health_ms, 3),
        ratio_latency_to_reference=round(p50 / health_ms, 2),
        process_pool_round_trip_p50_ms=round(pool_ms, 3),
        ratio_latency_to_process_pool=round(p50 / pool_ms, 1),
    )  # fmt: skip
    _line(
        bench="jobs.start", server=server_label, capability="noop", workers=2, jobs=args.jobs,
        measure="created_at -> started_at, one job at a time",
        p50_ms=round(statistics.median(start_ms), 1), p99_ms=round(_pct(start_ms, 0.99), 1),
        reference="process pool round trip", reference_p50_ms=round(pool_ms, 3),
        ratio_p50_to_reference=round(statistics.median(start_ms) / pool_ms, 1),
    )  # fmt: skip
    children = [wait for parent in fan_out for wait in parent]
    _line(
        bench="jobs.fan_out", server=server_label, workers=2, parents=args.parents,
        children_per_parent=2, measure="child created_at -> started_at",
        p50_ms=round(statistics.median(children), 1), p99_ms=round(_pct(children, 0.99), 1),
        first_parent_children_ms=[round(w, 1) for w in fan_out[0]], goal="p50 <= 50",
        reference="process pool round trip", reference_p50_ms=round(pool_ms, 3),
    )  # fmt: skip


if __name__ == "__main__":
    main()
