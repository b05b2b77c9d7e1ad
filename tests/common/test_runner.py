"""`run_job`, the entrypoint shared by local workers and Modal containers, end to end in
this process: on SQLite + the directory store and on PostgreSQL + S3 (the suite's servers).
A job reads a stored file, reports progress and logs, writes an artefact, and finishes its
record; failures, retries and cancellation end in the right status."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from common.capabilities import Context, Resources, capability
from common.errors import InvalidInput
from common.jobs.runner import run_job
from common.jobs.status import Status
from common.records import migrate
from common.runtime import Runtime
from common.settings import Settings
from tests.support.s3 import S3Server, empty_and_remove_bucket, s3_settings_env, unique_bucket


class ArtefactParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    fail_attempts: int = 0


class ArtefactResult(BaseModel):
    artefact_id: uuid.UUID
    sha256: str


@capability(
    "test.runner.artefact",
    params=ArtefactParams,
    result=ArtefactResult,
    resources=Resources(retries=1),
)
def make_artefact(params: ArtefactParams, ctx: Context) -> ArtefactResult:
    """Reverses a stored file into a new one; fails its first `fail_attempts` attempts."""
    stored = ctx.file(params.file_id)
    data = ctx.objects.get_bytes(stored.key)
    ctx.progress(0.5, "read")
    if ctx.objects.exists(f"jobs/{ctx.job_id}/attempted") is False and params.fail_attempts:
        ctx.objects.put_bytes(f"jobs/{ctx.job_id}/attempted", b"1")
        raise InvalidInput("first attempt fails on purpose")
    ctx.log(f"reversing {len(data)} bytes")
    artefact = ctx.save_file("reversed.bin", data[::-1], kind="test")
    return ArtefactResult(artefact_id=artefact.id, sha256=hashlib.sha256(data[::-1]).hexdigest())


@pytest.fixture(params=["sqlite+dir", "postgres+s3"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "heartbeat_interval_s": 0.2}
    bucket = None
    if request.param == "postgres+s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket = unique_bucket()
        env = s3_settings_env(server, bucket)
        values |= {k.removeprefix("APERTURE_").lower(): v for k, v in env.items()}
        values["database_url"] = request.getfixturevalue("postgres_url")
    runtime = Runtime.from_settings(Settings(**values))  # type: ignore[arg-type]
    migrate(runtime.engine)
    if bucket is not None:
        runtime.objects.ensure_bucket()
    try:
        yield runtime
    finally:
        if bucket is not None:
            empty_and_remove_bucket(runtime.objects)
        runtime.close()


def _submit(
    runtime: Runtime,
    function: str,
    params: dict[str, object],
    owner: uuid.UUID | None = None,
    attempts: int = 1,
) -> uuid.UUID:
    return runtime.jobs.create(
        function=function, params=params, executor="local", owner_id=owner, max_attempts=attempts
    ).id


def test_a_job_runs_end_to_end(runtime: Runtime) -> None:
    owner = uuid.uuid4()
    source = runtime.files.add(b"aperture" * 1000, name="in.bin", owner_id=owner)
    job_id = _submit(runtime, "test.runner.artefact", {"file_id": str(source.id)}, owner)

    assert run_job(job_id, runtime, handle="test:1") is Status.succeeded

    job = runtime.jobs.get(job_id)
    assert (job.status, job.progress, job.attempts, job.handle) == (
        Status.succeeded,
        1.0,
        1,
        "test:1",
    )
    result = ArtefactResult.model_validate(job.result)
    artefact = runtime.files.get(result.artefact_id, owner_id=owner)
    stored = runtime.objects.get_bytes(artefact.key)
    assert stored == (b"aperture" * 1000)[::-1]
    assert result.sha256 == artefact.sha256 == hashlib.sha256(stored).hexdigest()
    assert runtime.files.record(artefact.id).source_job_id == job_id
    events = runtime.queries.events(job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.kind, e.status) for e in events] == [
        ("status", "queued"),
        ("status", "running"),
        ("progress", "running"),
        ("log", "running"),
        ("status", "succeeded"),
    ]


def test_a_failed_attempt_is_retried_then_succeeds(runtime: Runtime) -> None:
    source = runtime.files.add(b"x", name="in.bin", owner_id=None)
    submitted: list[uuid.UUID] = []
    runtime.submit = submitted.append  # what an executor's hook receives
    job_id = _submit(
        runtime, "test.runner.artefact", {"file_id": str(source.id), "fail_attempts": 1}, attempts=2
    )

    assert run_job(job_id, runtime) is Status.queued
    assert submitted == [job_id]
    assert run_job(job_id, runtime) is Status.succeeded
    assert runtime.jobs.get(job_id).attempts == 2


def test_failures_end_the_job_with_the_reason(runtime: Runtime) -> None:
    missing = _submit(runtime, "test.runner.artefact", {"file_id": str(uuid.uuid4())})
    assert run_job(missing, runtime) is Status.failed
    error = runtime.jobs.get(missing).error
    assert error is not None and error.type == "not-found"

    unknown = _submit(runtime, "no.such.capability", {})
    assert run_job(unknown, runtime) is Status.failed
    assert runtime.jobs.get(unknown).error.type == "unknown-function"  # type: ignore[union-attr]


def test_a_cancelled_or_taken_job_does_not_run(runtime: Runtime) -> None:
    job_id = _submit(runtime, "noop", {})
    runtime.jobs.request_cancel(job_id)
    assert run_job(job_id, runtime) is None
    assert runtime.jobs.get(job_id).status is Status.cancelled

    taken = _submit(runtime, "noop", {})
    assert run_job(taken, runtime) is Status.succeeded
    assert run_job(taken, runtime) is None  # a second delivery of the same job
    assert runtime.jobs.get(taken).attempts == 1
