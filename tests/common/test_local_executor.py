"""The local executor with real worker processes: success, crashes of every kind, retry,
cancellation (cooperative and hard), timeouts, frozen workers, fan-out on a one-worker
pool, and recovery of jobs a previous server left behind."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.datadir import DataDirBusy
from common.executors.local import LocalExecutor
from common.jobs import JobRecord, Status
from common.jobs.service import JobService
from common.records import migrate
from common.runtime import Runtime
from common.settings import Settings
from tests.support.app import make_settings


def _runtime(settings: Settings) -> Runtime:
    runtime = Runtime.from_settings(settings)
    migrate(runtime.engine)
    return runtime


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobService]:
    """One single-worker pool for the module: a worker spawn costs seconds, and each
    test only looks at its own jobs."""
    settings = make_settings(
        tmp_path_factory.mktemp("pool") / "data", workers=1, worker_idle_exit_s=1.0
    )
    runtime = _runtime(settings)
    executor = LocalExecutor(runtime)
    executor.start()
    yield JobService(runtime, executor)
    executor.stop()
    runtime.close()


def _wait(service: JobService, job_id: uuid.UUID, timeout: float = 30) -> JobRecord:
    deadline = time.monotonic() + timeout
    while not (job := service.runtime.jobs.get(job_id)).status.terminal:
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job.status} after {timeout} s")
        time.sleep(0.05)
    return job


def _run(service: JobService, function: str, **params: object) -> JobRecord:
    return _wait(service, service.submit(function, dict(params), owner_id=None).id)


def test_a_job_runs_to_success(pool: JobService) -> None:
    job = _run(pool, "noop", sleep_s=0.1)
    assert job.status is Status.succeeded
    assert job.result is not None and job.result["slept_s"] >= 0.1
    assert job.attempts == 1 and job.progress == 1.0


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("test.exit", "exited with code 3"),
        ("test.segfault", "killed by signal SIGSEGV"),
    ],
)
def test_a_crashing_worker_fails_its_job_and_the_pool_keeps_serving(
    pool: JobService, function: str, reason: str
) -> None:
    job = _run(pool, function)
    assert job.status is Status.failed
    assert job.error is not None and job.error.type == "worker-lost"
    assert reason in job.error.message
    assert _run(pool, "noop").status is Status.succeeded


def test_errors_in_capabilities_fail_with_their_message(pool: JobService) -> None:
    refused = _run(pool, "test.fail")
    assert refused.error is not None and refused.error.type == "invalid-input"
    assert refused.error.message == "this input is refused on purpose"
    bug = _run(pool, "test.bug")
    assert bug.error is not None and bug.error.type == "internal"
    assert "ZeroDivisionError" in bug.error.message
    logs = pool.runtime.queries.events(bug.id)
    assert any("Traceback" in (e.message or "") for e in logs)


def test_a_crash_with_retries_left_is_retried(pool: JobService) -> None:
    job = _run(pool, "test.flaky")
    assert job.status is Status.succeeded and job.attempts == 2
    messages = [e.message or "" for e in pool.runtime.queries.events(job.id)]
    assert any("retrying" in m for m in messages)


def test_cooperative_cancel_stops_a_running_job(pool: JobService) -> None:
    job = pool.submit("noop", {"sleep_s": 30}, owner_id=None)
    _wait_status(pool, job.id, Status.running)
    pool.cancel(job.id)
    done = _wait(pool, job.id, timeout=5)
    assert done.status is Status.cancelled


def test_a_crash_after_a_cooperative_cancel_reports_the_crash(pool: JobService) -> None:
    """The stop planned for a cancelled run ends with that run: a later crash on the same
    worker is reported as what it is, not as the earlier cancel."""
    job = pool.submit("noop", {"sleep_s": 30}, owner_id=None)
    _wait_status(pool, job.id, Status.running)
    pool.cancel(job.id)
    assert _wait(pool, job.id, timeout=5).status is Status.cancelled
    crashed = _run(pool, "test.exit")  # one worker: the same process runs it
    assert crashed.error is not None and "exited with code 3" in crashed.error.message
    assert _run(pool, "noop").status is Status.succeeded  # the replacement worker serves


def test_a_job_that_ignores_cancel_is_killed_after_the_grace_period(pool: JobService) -> None:
    job = pool.submit("test.stubborn", {"seconds": 60}, owner_id=None)
    _wait_status(pool, job.id, Status.running)
    started = time.monotonic()
    pool.cancel(job.id)
    done = _wait(pool, job.id, timeout=15)
    assert done.status is Status.cancelled
    assert time.monotonic() - started >= pool.runtime.settings.cancel_grace_s * 0.9
    assert _run(pool, "noop").status is Status.succeeded


def test_a_queued_job_is_cancelled_at_once(pool: JobService) -> None:
    blocker = pool.submit("noop", {"sleep_s": 2}, owner_id=None)
    queued = pool.submit("noop", {}, owner_id=None)
    assert pool.cancel(queued.id).status is Status.cancelled
    assert _wait(pool, blocker.id).status is Status.succeeded
    assert pool.runtime.jobs.get(queued.id).attempts == 0


def test_a_job_past_its_timeout_fails(pool: JobService) -> None:
    job = _run(pool, "test.slow", seconds=30)
    assert job.status is Status.failed
    assert job.error is not None and job.error.type == "timeout"


def test_fan_out_on_a_single_worker_does_not_deadlock(pool: JobService) -> None:
    job = _run(pool, "test.fanout", children=3, seconds=0.1)
    assert job.status is Status.succeeded
    assert job.result is not None and job.result["value"] == 3
    children = pool.runtime.queries.children(job.id)
    assert len(children) == 3 and all(c.status is Status.succeeded for c in children)


def test_cancelling_a_parent_cancels_its_children(pool: JobService) -> None:
    job = pool.submit("test.fanout", {"children": 2, "seconds": 30}, owner_id=None)
    deadline = time.monotonic() + 20
    while len(pool.runtime.queries.children(job.id)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pool.cancel(job.id)
    assert _wait(pool, job.id).status is Status.cancelled
    for child in pool.runtime.queries.children(job.id):
        assert _wait(pool, child.id).status is Status.cancelled


def test_a_frozen_worker_is_detected_by_its_missing_heartbeat(tmp_path: Path) -> None:
    runtime = _runtime(
        make_settings(
            tmp_path / "data", workers=1, heartbeat_interval_s=0.2, heartbeat_timeout_s=1.5
        )
    )
    executor = LocalExecutor(runtime)
    executor.start()
    try:
        service = JobService(runtime, executor)
        job = _run(service, "test.freeze")
        assert job.status is Status.failed
        assert job.error is not None and "heartbeat" in job.error.message
        assert _run(service, "noop").status is Status.succeeded
    finally:
        executor.stop()
        runtime.close()


def test_jobs_left_by_a_previous_server_are_recovered(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", workers=1)
    runtime = _runtime(settings)
    jobs = runtime.jobs
    # what a killed server leaves: one job running (attempts left), one running (none
    # left), one queued under its handle, one cancelling
    retry = jobs.create(function="noop", params={}, executor="local", max_attempts=2).id
    final = jobs.create(function="noop", params={}, executor="local").id
    queued = jobs.create(function="noop", params={}, executor="local").id
    stopping = jobs.create(function="noop", params={}, executor="local").id
    for job_id in (retry, final, stopping):
        jobs.start(job_id, "local:dead:" + str(job_id))
    jobs.claim(queued, "local:dead:" + str(queued))
    jobs.request_cancel(stopping)
    executor = LocalExecutor(runtime)
    executor.start()
    try:
        service = JobService(runtime, executor)
        assert _wait(service, retry).status is Status.succeeded
        lost = _wait(service, final)
        assert lost.status is Status.failed and lost.error is not None
        assert "server stopped" in lost.error.message
        assert _wait(service, queued).status is Status.succeeded
        assert _wait(service, stopping).status is Status.cancelled
    finally:
        executor.stop()
        runtime.close()


def _wait_status(service: JobService, job_id: uuid.UUID, status: Status) -> None:
    deadline = time.monotonic() + 20
    while service.runtime.jobs.get(job_id).status is not status:
        assert time.monotonic() < deadline, f"job never became {status}"
        time.sleep(0.02)


def _health(service: JobService) -> dict[str, object]:
    executor = service.executor
    assert isinstance(executor, LocalExecutor)
    return executor.health()


def _wait_health(service: JobService, what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check(_health(service)[what]):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"executor {what} never passed: {_health(service)}"
        time.sleep(0.02)


def test_a_fan_out_child_starts_at_once_on_the_warm_spare(pool: JobService) -> None:
    """The pool keeps a spare started beside its one worker, so the child of a parent
    that blocks in gather runs without waiting for a process to spawn."""
    _wait_health(pool, "workers", lambda n: n == 2)  # the worker and the spare
    go = f"test/go/{uuid.uuid4()}"
    parent = pool.submit("test.fanout", {"children": 1, "go_key": go}, owner_id=None)
    _wait_status(pool, parent.id, Status.running)
    _wait_health(pool, "idle", lambda idle: idle >= 1)  # the spare is ready
    pool.runtime.objects.put_bytes(go, b"go")
    assert _wait(pool, parent.id).status is Status.succeeded
    (child,) = pool.runtime.queries.children(parent.id)
    assert child.started_at is not None
    waited = (child.started_at - child.created_at).total_seconds()
    # a worker spawned on demand takes seconds to import everything
    assert waited < 0.5, f"the child waited {waited:.3f} s to start"


def test_idle_extra_workers_exit(pool: JobService) -> None:
    """Workers beyond the pool's size (the spare, those lent to a blocked parent) exit
    once idle past APERTURE_WORKER_IDLE_EXIT_S; the pool still serves afterwards."""
    job = pool.submit("test.fanout", {"children": 2, "seconds": 0.5}, owner_id=None)
    _wait_health(pool, "workers", lambda n: n >= 3)  # parent, child, spare
    assert _wait(pool, job.id).status is Status.succeeded
    _wait_health(pool, "workers", lambda n: n == 2)  # the pool's one worker and the spare
    assert _run(pool, "noop").status is Status.succeeded


def test_a_second_executor_on_the_same_data_directory_is_refused(pool: JobService) -> None:
    """Restart recovery is for a server that is gone: while one executor holds the data
    directory, another cannot start (and recovers nothing)."""
    running = pool.submit("noop", {"sleep_s": 2}, owner_id=None)
    _wait_status(pool, running.id, Status.running)
    second = LocalExecutor(pool.runtime)
    with pytest.raises(DataDirBusy, match="in use by another aperture server"):
        second.start()
    assert _wait(pool, running.id).status is Status.succeeded
