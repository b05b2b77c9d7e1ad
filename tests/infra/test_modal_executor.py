"""The Modal executor against the in-process stand-in of the Modal calls it makes: jobs
really run (`run_call` -> `run_job` in a thread), and the executor's view through
`spawn` / `from_id` / `get(timeout=0)` / `cancel` drives recovery and cancellation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import modal
import pytest
from sqlalchemy import update

from common.capabilities import load_capabilities
from common.executors import HandleState, make_executor
from common.executors.modal import ModalExecutor, function_name, run_call
from common.jobs.models import JobRecord
from common.jobs.service import JobService
from common.jobs.status import Status
from common.records import Job, migrate
from common.records.types import utcnow
from common.runtime import Runtime
from tests.support.app import TEST_CAPABILITIES, make_settings
from tests.support.modal_standin import ModalStandIn


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        settings = make_settings(
            tmp_path / "data", executor="modal", cancel_grace_s=0.3, heartbeat_interval_s=0.2
        )
        self.runtime = Runtime.from_settings(settings)
        migrate(self.runtime.engine)
        self.modal = ModalStandIn(self.runtime)
        self.executor = ModalExecutor(
            self.runtime, api=self.modal, sweep_interval_s=0.1, quiet_after_s=0.0
        )
        self.runtime.submit = self.executor.submit_or_fail  # as in a container
        self.jobs = JobService(self.runtime, self.executor)

    def submit(self, function: str, **params: Any) -> JobRecord:
        return self.jobs.submit(function, params, owner_id=None)

    def wait(self, job_id: uuid.UUID, *statuses: Status, timeout: float = 15) -> JobRecord:
        wanted = set(statuses) or {Status.succeeded, Status.failed, Status.cancelled}
        return _until(
            lambda: self.runtime.jobs.get(job_id), lambda job: job.status in wanted, timeout
        )


def _until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.executor.stop()
        h.modal.hold.set()
        h.modal.wait_idle()
        h.runtime.close()


@pytest.fixture
def supervised(harness: Harness) -> Harness:
    harness.executor.start()
    return harness


def test_a_job_runs_as_a_function_call(harness: Harness) -> None:
    job = harness.submit("noop")
    done = harness.wait(job.id)
    assert done.status is Status.succeeded and done.result == {"slept_s": pytest.approx(0, abs=1)}
    assert done.handle is not None and done.handle.startswith("fc-")
    call = harness.modal.calls[done.handle]
    assert (call.function, call.job_id) == ("cap_noop", str(job.id))
    # The job's record ends inside the call; the call itself ends a moment later.
    handle = done.handle
    state = _until(lambda: harness.executor.poll(handle), lambda s: s is HandleState.finished, 5)
    assert state is HandleState.finished


def test_pending_then_running_then_finished(harness: Harness) -> None:
    harness.modal.hold.clear()
    job = harness.submit("noop", sleep_s=0.6)
    handle = harness.runtime.jobs.get(job.id).handle
    assert handle is not None
    assert harness.executor.poll(handle) is HandleState.pending
    harness.modal.hold.set()
    harness.wait(job.id, Status.running)
    assert harness.executor.poll(handle) is HandleState.running
    assert harness.wait(job.id).status is Status.succeeded
    assert harness.executor.poll(handle) is HandleState.finished


def test_a_failing_capability_fails_its_job(harness: Harness) -> None:
    job = harness.wait(harness.submit("test.fail").id)
    assert job.status is Status.failed and job.error is not None
    assert job.error.type == "invalid-input"
    assert harness.executor.poll(job.handle or "") is HandleState.finished


def test_expired_output_is_lost_and_an_unstarted_job_fails(harness: Harness) -> None:
    finished = harness.wait(harness.submit("noop").id)
    harness.modal.expired.add(finished.handle or "")
    assert harness.executor.poll(finished.handle or "") is HandleState.lost

    harness.modal.hold.clear()
    stuck = harness.submit("noop")
    handle = harness.runtime.jobs.get(stuck.id).handle or ""
    harness.modal.expired.add(handle)
    harness.executor.sweep()
    job = harness.runtime.jobs.get(stuck.id)
    assert job.status is Status.failed
    assert job.error is not None and "expired" in job.error.message


def test_a_call_that_dies_fails_its_job_with_the_cause(supervised: Harness) -> None:
    supervised.modal.hold.clear()
    job = supervised.submit("noop")
    supervised.modal.crash.add(str(job.id))
    supervised.modal.hold.set()
    failed = supervised.wait(job.id)
    assert failed.status is Status.failed and failed.error is not None
    assert "exited with code 137" in failed.error.message


def test_a_silent_job_is_recovered_and_its_call_cancelled(harness: Harness) -> None:
    harness.modal.hold.clear()  # the call stays "running" in Modal's eyes
    job = harness.submit("noop")
    handle = harness.runtime.jobs.get(job.id).handle or ""
    harness.runtime.jobs.start(job.id, handle)  # it started, then froze: no more beats
    with harness.runtime.engine.begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=60))
        )
    harness.executor.sweep()
    failed = harness.runtime.jobs.get(job.id)
    assert failed.status is Status.failed and failed.error is not None
    assert "no heartbeat" in failed.error.message
    assert harness.modal.calls[handle].cancelled


def test_a_retried_call_counts_as_an_attempt(harness: Harness) -> None:
    """Modal retried the input after its container died mid-job: same call id."""
    source = harness.runtime.files.add(b"abc", name="a.txt", owner_id=None)
    job = harness.runtime.jobs.create(
        function="checksum", params={"file_id": str(source.id)}, executor="modal", max_attempts=2
    )
    harness.runtime.jobs.start(job.id, "fc-crashed")
    assert run_call(harness.runtime, str(job.id), "fc-crashed") == "succeeded"
    assert harness.runtime.jobs.get(job.id).attempts == 2

    once = harness.runtime.jobs.create(function="noop", params={}, executor="modal")
    harness.runtime.jobs.start(once.id, "fc-crashed-2")
    assert run_call(harness.runtime, str(once.id), "fc-crashed-2") is None
    failed = harness.runtime.jobs.get(once.id)
    assert failed.status is Status.failed and failed.error is not None
    assert "container stopped" in failed.error.message


def test_an_in_process_retry_spawns_a_new_call(harness: Harness) -> None:
    job = harness.submit("test.fail.retried")  # fails in the container, twice
    harness.wait(job.id, Status.failed)
    done = _until(lambda: harness.runtime.jobs.get(job.id), lambda j: j.attempts == 2, 10)
    assert done.status is Status.failed and done.attempts == 2
    assert len(harness.modal.calls) == 2


def test_cancel_is_cooperative_first(supervised: Harness) -> None:
    job = supervised.submit("noop", sleep_s=20)
    supervised.wait(job.id, Status.running)
    supervised.jobs.cancel(job.id)
    assert supervised.wait(job.id, timeout=5).status is Status.cancelled


def test_cancel_stops_the_call_after_the_grace_period(supervised: Harness) -> None:
    job = supervised.submit("test.stubborn", seconds=1.5)  # ignores ctx.cancelled()
    running = supervised.wait(job.id, Status.running)
    supervised.jobs.cancel(job.id)
    done = supervised.wait(job.id, timeout=5)
    assert done.status is Status.cancelled
    assert supervised.modal.calls[running.handle or ""].cancelled
    supervised.modal.wait_idle()
    assert supervised.runtime.jobs.get(job.id).status is Status.cancelled  # stays so


def test_modal_unreachable_fails_the_submission_clearly(harness: Harness) -> None:
    harness.modal.reachable = False
    job = harness.submit("noop")
    assert job.status is Status.failed and job.error is not None
    assert job.error.type == "executor"
    assert "unreachable" in job.error.message and "cap_noop" in job.error.message


def test_an_undeployed_function_fails_the_submission_clearly(harness: Harness) -> None:
    harness.modal.deployed = {"cap_test_fanout"}
    job = harness.submit("noop")
    assert job.status is Status.failed and job.error is not None
    assert "is the app deployed" in job.error.message

    parent = harness.wait(harness.submit("test.fanout", children=2).id)
    assert parent.status is Status.succeeded and parent.result is not None
    assert parent.result["value"] == 0  # both children failed at submission, none hung
    children = harness.runtime.queries.children(parent.id)
    assert [c.status for c in children] == [Status.failed, Status.failed]


def test_running_jobs_survive_modal_being_unreachable(harness: Harness) -> None:
    job = harness.submit("noop", sleep_s=0.8)
    harness.wait(job.id, Status.running)
    harness.modal.reachable = False
    harness.executor.sweep()  # cannot poll: must not fail the job
    assert harness.runtime.jobs.get(job.id).status is Status.running
    harness.modal.reachable = True
    assert harness.wait(job.id).status is Status.succeeded


def test_fan_out_children_are_spawned_calls(harness: Harness) -> None:
    parent = harness.wait(harness.submit("test.fanout", children=3).id)
    assert parent.status is Status.succeeded and parent.result is not None
    assert parent.result["value"] == 3
    handles = {c.handle for c in harness.runtime.queries.children(parent.id)}
    assert len(handles) == 3 and all(h and h.startswith("fc-") for h in handles)


def test_make_executor_builds_the_modal_executor(tmp_path: Path) -> None:
    runtime = Runtime.from_settings(make_settings(tmp_path, executor="modal"))
    try:
        executor = make_executor(runtime)
        assert isinstance(executor, ModalExecutor) and executor.api is modal
    finally:
        runtime.close()


def test_function_names_are_valid_and_distinct() -> None:
    assert function_name("workflow.fov") == "cap_workflow_fov"
    names = [function_name(n) for n in load_capabilities([TEST_CAPABILITIES])]
    assert len(set(names)) == len(names)
    assert all(n.isidentifier() and len(n) <= 64 for n in names)
