"""Job machinery speed: a no-op capability through the HTTP API on the local executor.

Measures, against `aperture serve` (2 workers) on a fresh SQLite data dir:
- submit -> terminal latency of one job at a time: from the server's own timestamps
  (created_at -> finished_at) and as a client sees it (POST, then SSE until the end);
- throughput: jobs/s for a burst of concurrent submissions, until all are terminal.
References measured in the same run: one HTTP round trip to /api/v1/health on the same
server, and one round trip through a bare `ProcessPoolExecutor` (spawn, 2 workers): the
floors of "talk to the server" and "hand work to another process".

Run: uv run python tests/bench/bench_jobs.py [--jobs 100] [--burst 500]
Prints one JSON line.
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

from tests.support.app import LiveServer, register


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
    args = parser.parse_args()
    pool_ms = _process_pool_round_trip_ms(200)
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "data", env={"APERTURE_LOG_LEVEL": "WARNING"})
        server.start(workers=2)
        try:
            with server.client() as client:
                headers = register(client)
                client.headers.update(headers)
                _sequential(client, 10)  # warm up
                health_ms = _health_round_trip_ms(client, 200)
                server_ms, observed_ms = _sequential(client, args.jobs)
            jobs_per_s = asyncio.run(_burst(server.url, args.burst, headers))
        finally:
            server.stop()
    p50 = statistics.median(server_ms)
    print(
        json.dumps(
            {
                "bench": "jobs",
                "capability": "noop",
                "executor": "local",
                "workers": 2,
                "database": "sqlite",
                "jobs": args.jobs,
                "burst": args.burst,
                "latency_p50_ms": round(p50, 2),
                "latency_p99_ms": round(_pct(server_ms, 0.99), 2),
                "observed_p50_ms": round(statistics.median(observed_ms), 2),
                "observed_p99_ms": round(_pct(observed_ms, 0.99), 2),
                "jobs_per_s": round(jobs_per_s, 1),
                "reference": "http_health_round_trip",
                "reference_p50_ms": round(health_ms, 3),
                "ratio_latency_to_reference": round(p50 / health_ms, 2),
                "process_pool_round_trip_p50_ms": round(pool_ms, 3),
                "ratio_latency_to_process_pool": round(p50 / pool_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
