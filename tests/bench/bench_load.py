"""Load on one `aperture serve` (SQLite, directory store, 2 workers), through real HTTP:

- `submits`: N concurrent job submissions (default 200). Every submission must come
  back 202 with its own id, and exactly N jobs (no more, no fewer) must exist and
  succeed: 0 lost, 0 duplicated. Reference: a /health round trip on the same server.
- `sse`: N concurrent SSE subscribers (default 1,000) on one job that logs a known
  number of lines once they are all connected. Every subscriber must receive every
  event, in order, without a gap. Reported: the server's memory per subscriber and CPU
  seconds, against the idle server's memory.
- `soak`: mixed traffic (jobs, uploads, downloads, listings, datasets, SSE) for
  `--soak-s` seconds (default 600). The server's memory must stay flat: reported as
  the least-squares slope of its RSS over the second half, in MiB per hour, against the
  RSS after warm-up. No 5xx is allowed.

Run: uv run python tests/bench/bench_load.py [submits|sse|soak ...] [--submits 200]
     [--subscribers 1000] [--soak-s 600]
Prints one JSON line per scenario. The machine is shared: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.objects.directory import DirectoryStore
from tests.support.app import LiveServer, register

CAPABILITIES = '["tests.bench.load_capabilities"]'
MIB = 1024 * 1024


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _process(server: LiveServer) -> psutil.Process:
    assert server.process is not None
    return psutil.Process(server.process.pid)


def _rss_mib(server: LiveServer) -> float:
    return _process(server).memory_info().rss / MIB


def _cpu_s(server: LiveServer) -> float:
    times = _process(server).cpu_times()
    return float(times.user + times.system)


async def _health_ms(client: httpx.AsyncClient, n: int = 50) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        (await client.get("/api/v1/health")).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _until_terminal(client: httpx.AsyncClient, tag: str, n: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        page = (await client.get("/api/v1/jobs", params={"tag": tag, "limit": 500})).json()
        if all(j["status"] in {"succeeded", "failed", "cancelled"} for j in page["items"]) and (
            page["total"] >= n
        ):
            return page
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs of {tag} not finished after {timeout} s")
        await asyncio.sleep(0.5)


# -- 200 concurrent submits -------------------------------------------------------------


async def bench_submits(server: LiveServer, headers: dict[str, str], n: int) -> dict[str, Any]:
    tag = f"load-{uuid.uuid4().hex[:8]}"
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=120, limits=limits
    ) as client:
        health_ms = await _health_ms(client)

        async def submit(i: int) -> tuple[int, str, float]:
            start = time.perf_counter()
            body = {"function": "noop", "name": f"{tag}-{i}", "tags": [tag]}
            response = await client.post("/api/v1/jobs", json=body)
            return response.status_code, response.json().get("id", ""), time.perf_counter() - start

        started = time.perf_counter()
        answers = await asyncio.gather(*(submit(i) for i in range(n)))
        submitted_s = time.perf_counter() - started
        page = await _until_terminal(client, tag, n, timeout=600)
        done_s = time.perf_counter() - started
    ids = [job_id for status, job_id, _ in answers if status == 202]
    names = [job["name"] for job in page["items"]]
    latencies = [seconds * 1000 for _, _, seconds in answers]
    return {
        "bench": "load.submits",
        "concurrent": n,
        "accepted": len(ids),
        "distinct_ids": len(set(ids)),
        "stored": page["total"],
        "lost": n - len(set(names) & {f"{tag}-{i}" for i in range(n)}),
        "duplicated": len(names) - len(set(names)),
        "succeeded": sum(job["status"] == "succeeded" for job in page["items"]),
        "submit_p50_ms": round(_pct(latencies, 0.5), 1),
        "submit_p95_ms": round(_pct(latencies, 0.95), 1),
        "all_submitted_s": round(submitted_s, 2),
        "all_terminal_s": round(done_s, 2),
        "reference": "GET /api/v1/health round trip, same server",
        "reference_p50_ms": round(health_ms, 2),
        "ratio_submit_p50_to_health": round(_pct(latencies, 0.5) / health_ms, 1),
    }


# -- 1,000 SSE subscribers --------------------------------------------------------------


async def _subscribe(client: httpx.AsyncClient, job_id: str, connected: list[int]) -> list[int]:
    """The event ids (seq) one subscriber receives, until the stream ends."""
    seqs: list[int] = []
    async with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        stream.raise_for_status()
        connected.append(1)
        async for line in stream.aiter_lines():
            if line.startswith("id:"):
                seqs.append(int(line.removeprefix("id:").strip()))
    return seqs


async def bench_sse(
    server: LiveServer, headers: dict[str, str], n: int, ticks: int = 20
) -> dict[str, Any]:
    go_key = f"tmp/bench/go-{uuid.uuid4().hex}"
    params = {"go_key": go_key, "ticks": ticks, "interval_s": 0.1}
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=600, limits=limits
    ) as client:
        job = (
            await client.post("/api/v1/jobs", json={"function": "bench.ticks", "params": params})
        ).json()
        idle_rss, cpu_before = _rss_mib(server), _cpu_s(server)
        connected: list[int] = []
        started = time.perf_counter()
        streams = [asyncio.create_task(_subscribe(client, job["id"], connected)) for _ in range(n)]
        while len(connected) < n:
            if any(task.done() for task in streams):  # one failed: surface its error
                await asyncio.gather(*streams)
            await asyncio.sleep(0.1)
        connect_s = time.perf_counter() - started
        peak_rss = _rss_mib(server)
        store = DirectoryStore(server.data_dir / "objects", public_url=server.url, signing_key=b"-")
        store.put_bytes(go_key, b"go")  # every subscriber is in: let the job talk
        received = await asyncio.gather(*streams)
        total_s = time.perf_counter() - started
        peak_rss = max(peak_rss, _rss_mib(server))
        cpu_s = _cpu_s(server) - cpu_before
        events = (await client.get(f"/api/v1/jobs/{job['id']}/logs")).json()
    expected = [event["seq"] for event in events]
    complete = sum(seqs == expected for seqs in received)
    return {
        "bench": "load.sse",
        "subscribers": n,
        "events_per_subscriber": len(expected),
        "subscribers_with_every_event_in_order": complete,
        "missing_events": sum(len(set(expected) - set(seqs)) for seqs in received),
        "connect_all_s": round(connect_s, 2),
        "total_s": round(total_s, 2),
        "server_cpu_s": round(cpu_s, 2),
        "server_rss_idle_mib": round(idle_rss, 1),
        "server_rss_peak_mib": round(peak_rss, 1),
        "rss_per_subscriber_kib": round((peak_rss - idle_rss) * 1024 / n, 1),
        "reference": "the same server's RSS before the subscribers connected",
        "ratio_peak_to_idle_rss": round(peak_rss / idle_rss, 2),
    }


# -- soak -------------------------------------------------------------------------------


async def _mixed(client: httpx.AsyncClient, until: float, stats: dict[str, Any]) -> None:
    """One simulated user doing a bit of everything, until `until`."""
    payload = b"time,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000))
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            job = (await client.post("/api/v1/jobs", json={"function": "noop"})).json()
            upload = await client.post("/api/v1/files", files={"file": ("soak.csv", payload)})
            file_id = upload.json()["id"]
            responses = [
                upload,
                await client.get(f"/api/v1/files/{file_id}/download"),
                await client.get("/api/v1/files", params={"limit": 20}),
                await client.get("/api/v1/jobs", params={"limit": 20}),
                await client.get("/api/v1/jobs/stats"),
                await client.post("/api/v1/datasets", json={"name": "soak"}),
            ]
            dataset_id = responses[-1].json()["id"]
            async with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
                async for _ in stream.aiter_lines():
                    pass
            responses += [
                await client.delete(f"/api/v1/datasets/{dataset_id}"),
                await client.delete(f"/api/v1/files/{file_id}"),
                await client.get(f"/api/v1/jobs/{job['id']}/logs"),
            ]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            stats["errors"].append(repr(error))
            continue
        stats["requests"] += len(responses) + 2
        stats["server_errors"] += sum(r.status_code >= 500 for r in responses)
        stats["rounds_ms"].append((time.perf_counter() - start) * 1000)


def _slope_mib_per_hour(samples: list[tuple[float, float]]) -> float:
    xs, ys = [t for t, _ in samples], [rss for _, rss in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    num = sum((x - mean_x) * (y - mean_y) for x, y in samples)
    den = sum((x - mean_x) ** 2 for x in xs) or 1.0
    return num / den * 3600


async def bench_soak(
    server: LiveServer, headers: dict[str, str], seconds: float, users: int = 8
) -> dict[str, Any]:
    stats: dict[str, Any] = {"requests": 0, "server_errors": 0, "errors": [], "rounds_ms": []}
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as client:
        started = time.monotonic()
        until = started + seconds
        users_done = asyncio.gather(*(_mixed(client, until, stats) for _ in range(users)))
        while time.monotonic() < until:
            samples.append((time.monotonic() - started, _rss_mib(server)))
            await asyncio.sleep(max(1.0, seconds / 120))
        await users_done
    warm = [s for s in samples if s[0] >= seconds * 0.1] or samples
    second_half = [s for s in samples if s[0] >= seconds / 2] or samples
    slope = _slope_mib_per_hour(second_half)
    return {
        "bench": "load.soak",
        "seconds": seconds,
        "users": users,
        "requests": stats["requests"],
        "server_errors": stats["server_errors"],
        "client_errors": len(stats["errors"]),
        "round_p50_ms": round(_pct(stats["rounds_ms"], 0.5), 1),
        "round_p95_ms": round(_pct(stats["rounds_ms"], 0.95), 1),
        "rss_after_warmup_mib": round(warm[0][1], 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "rss_max_mib": round(max(rss for _, rss in samples), 1),
        "rss_slope_second_half_mib_per_hour": round(slope, 2),
        "rss_slope_last_quarter_mib_per_hour": round(
            _slope_mib_per_hour([s for s in samples if s[0] >= seconds * 0.75] or samples), 2
        ),
        "rss_at_quarters_mib": [
            round(min(samples, key=lambda s: abs(s[0] - seconds * q))[1], 1)
            for q in (0.25, 0.5, 0.75, 1.0)
        ],
        "reference": "the server's RSS after warm-up (10% of the run)",
        "ratio_end_to_warm_rss": round(samples[-1][1] / warm[0][1], 3),
    }


# -- main -------------------------------------------------------------------------------


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["submits", "sse", "soak"])
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--soak-s", type=float, default=600.0)
    args = parser.parse_args()
    _raise_fd_limit(4 * args.subscribers + 1024)  # both ends of every stream, and spare
    with tempfile.TemporaryDirectory(prefix="aperture-bench-load-") as tmp:
        server = LiveServer(
            Path(tmp) / "data", env={"APERTURE_EXTRA_CAPABILITIES": CAPABILITIES}
        ).start(workers=2)
        try:
            with server.client() as client:
                headers = register(client)
            for scenario in args.scenarios:
                if scenario == "submits":
                    result = asyncio.run(bench_submits(server, headers, args.submits))
                elif scenario == "sse":
                    result = asyncio.run(bench_sse(server, headers, args.subscribers))
                elif scenario == "soak":
                    result = asyncio.run(bench_soak(server, headers, args.soak_s))
                else:
                    parser.error(f"unknown scenario {scenario!r}")
                print(json.dumps(result), flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
