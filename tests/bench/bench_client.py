"""The Python client's speed, end to end through `aperture serve` (what a user waits for).

- upload, S3: `Client.upload` of a 1 GiB file (parallel presigned parts to SeaweedFS,
  SHA-256 while reading, the server's completion check included) against boto3's
  `upload_file` (default transfer settings) of the same file to the same SeaweedFS.
  Goal: >= 0.9x.
- upload, directory store: the same through the API's signed part endpoint, against
  `shutil.copyfile` of the same file on the same disk (ratio reported).
- download, both stores: `Client.download` of the file just uploaded (moved on a thread
  by a blocking httpx client into a temp file, SHA-256 checked, renamed into place; S3 is
  streamed through the API here, as `download_redirect` is off by default), against
  `shutil.copyfile` of the same file (directory store) or boto3's `download_file` from
  the same SeaweedFS (S3).
- jobs: a batch of 100 `noop` jobs (8 in flight, like `aperture batch`); the client's
  overhead per job = submit-to-done seen by the client minus the server's own time for
  the job (created_at -> finished_at), p50 and mean.

Run: uv run python tests/bench/bench_client.py [--size-mib 1024] [--jobs 100]
Prints one JSON line per measurement. Noisy on a shared machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client import ApiKey, AsyncClient, Client
from tests.bench.bench_files import MIB, reference_boto3, write_source
from tests.client.conftest import new_account
from tests.support.app import REPO, LiveServer
from tests.support.s3 import run_seaweedfs, s3_settings_env, unique_bucket

ENV = {"APERTURE_LOG_LEVEL": "WARNING"}
#: The checkout whose server is measured (--server-repo: the code before a change).
SERVER_REPO = [REPO]


def _client_upload(url: str, source: Path, state: Path) -> tuple[float, float, str, float]:
    """(seconds in all, seconds until the last part landed, stored SHA-256, seconds to
    download it again); the upload's rest is the server's completion (assembly, SHA-256
    and type check of the stored bytes)."""
    account = new_account(url)
    landed = [0.0]
    with Client(url, ApiKey(account.api_key), state_dir=state) as aperture:
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done == total:
                landed[0] = time.perf_counter() - start

        result = aperture.upload(source, force=True, progress=progress)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        back = aperture.download(result.file.id, state.parent / "downloaded.csv")
        down = time.perf_counter() - start
    back.unlink()
    return elapsed, landed[0], str(result.file.sha256), down


def _line(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def bench_s3(work: Path, source: Path, sha: str, size_mib: int) -> None:
    (work / "weed").mkdir(parents=True)
    with run_seaweedfs(work / "weed") as s3:
        bucket = unique_bucket("bench-client")
        s3.store(bucket).ensure_bucket()
        env = {**ENV, **s3_settings_env(s3, bucket)}
        server = LiveServer(work / "data", env=env, repo=SERVER_REPO[0]).start(web_workers=None)
        try:
            took, parts, stored, down = _client_upload(server.url, source, work / "state")
        finally:
            server.stop()
        ref_mib_s, ref_down_mib_s = reference_boto3(s3, bucket, work, source)
    if stored != sha:
        raise RuntimeError("the server stored other bytes")
    mib_s = size_mib / took
    _line(
        bench="client_upload", backend="s3", size_mib=size_mib, client_mib_s=round(mib_s, 1),
        reference="boto3 upload_file (same SeaweedFS)", reference_mib_s=round(ref_mib_s, 1),
        ratio=round(mib_s / ref_mib_s, 3), goal=0.9,
        parts_only_mib_s=round(size_mib / parts, 1),
        ratio_parts_only=round(size_mib / parts / ref_mib_s, 3),
        server_completion_s=round(took - parts, 2),
    )  # fmt: skip
    _download_line("s3", size_mib, down, "boto3 download_file (same SeaweedFS)", ref_down_mib_s)


def _download_line(backend: str, size_mib: int, took: float, reference: str, ref: float) -> None:
    _line(
        bench="client_download", backend=backend, size_mib=size_mib,
        client_mib_s=round(size_mib / took, 1), reference=reference,
        reference_mib_s=round(ref, 1), ratio=round(size_mib / took / ref, 3),
    )  # fmt: skip


def bench_dir(work: Path, source: Path, sha: str, size_mib: int) -> None:
    server = LiveServer(work / "data", env=ENV, repo=SERVER_REPO[0]).start(web_workers=None)
    try:
        took, parts, stored, down = _client_upload(server.url, source, work / "state")
    finally:
        server.stop()
    shutil.rmtree(work / "data", ignore_errors=True)
    if stored != sha:
        raise RuntimeError("the server stored other bytes")
    start = time.perf_counter()
    shutil.copyfile(source, work / "copy.csv")
    ref = time.perf_counter() - start
    (work / "copy.csv").unlink()
    _download_line("dir", size_mib, down, "shutil.copyfile (same disk)", size_mib / ref)
    _line(
        bench="client_upload", backend="dir", size_mib=size_mib,
        client_mib_s=round(size_mib / took, 1), reference="shutil.copyfile (same disk)",
        reference_mib_s=round(size_mib / ref, 1), ratio=round(ref / took, 3),
        parts_only_mib_s=round(size_mib / parts, 1), server_completion_s=round(took - parts, 2),
    )  # fmt: skip


async def _noop_batch(url: str, key: str, count: int, in_flight: int) -> list[tuple[float, float]]:
    """(client seconds submit->done, server seconds created->finished) per job."""
    slots = asyncio.Semaphore(in_flight)
    async with AsyncClient(url, ApiKey(key)) as aperture:
        await aperture.function("noop")  # schema fetched once, as a batch does

        async def one() -> tuple[float, float]:
            async with slots:
                start = time.perf_counter()
                job = await aperture.submit("noop", {})
                done = await aperture.wait(job.id)
                seen = time.perf_counter() - start
            if done.status != "succeeded" or not done.finished_at or not done.created_at:
                raise RuntimeError(f"noop job ended {done.status}")
            return seen, (done.finished_at - done.created_at).total_seconds()

        return await asyncio.gather(*(one() for _ in range(count)))


def bench_jobs(work: Path, count: int, in_flight: int = 8) -> None:
    server = LiveServer(work / "data", env=ENV, repo=SERVER_REPO[0])
    server.start(workers=2, web_workers=None)
    try:
        account = new_account(server.url)
        asyncio.run(_noop_batch(server.url, account.api_key, 8, in_flight))  # warm-up
        start = time.perf_counter()
        timings = asyncio.run(_noop_batch(server.url, account.api_key, count, in_flight))
        wall = time.perf_counter() - start
    finally:
        server.stop()
    overhead = [seen - own for seen, own in timings]
    own = [o for _, o in timings]
    _line(
        bench="client_jobs", jobs=count, in_flight=in_flight, wall_s=round(wall, 2),
        jobs_per_s=round(count / wall, 1),
        client_overhead_ms_p50=round(statistics.median(overhead) * 1000, 1),
        client_overhead_ms_mean=round(statistics.fmean(overhead) * 1000, 1),
        reference="server's own time per job (created_at -> finished_at)",
        server_time_ms_p50=round(statistics.median(own) * 1000, 1),
        ratio_overhead_to_server_time=round(
            statistics.median(overhead) / statistics.median(own), 3
        ),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--only", default="s3,dir,jobs")
    parser.add_argument("--server-repo", type=Path, help="serve this checkout instead")
    args = parser.parse_args()
    if args.server_repo:
        SERVER_REPO[0] = args.server_repo
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        root = Path(tmp)
        source = root / "source.csv"
        sha = write_source(source, args.size_mib * MIB) if only & {"s3", "dir"} else ""
        if "s3" in only:
            bench_s3(root / "s3", source, sha, args.size_mib)
        if "dir" in only:
            (root / "dir").mkdir()
            bench_dir(root / "dir", source, sha, args.size_mib)
        if "jobs" in only:
            (root / "jobs").mkdir()
            bench_jobs(root / "jobs", args.jobs)


if __name__ == "__main__":
    main()
