"""The recovery policy both executors apply to a job whose run ended without finishing
it, on SQLite and PostgreSQL: what each cause does to the job, and what becomes of a job
its run never started."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from common.jobs import JobStore, Status
from common.jobs.recovery import Cause, Loss, Unstarted, recover
from common.records import make_engine, make_sessionmaker, migrate


@pytest.fixture
def jobs(database_url: str) -> Iterator[JobStore]:
    engine = make_engine(database_url)
    migrate(engine)
    yield JobStore(make_sessionmaker(engine))
    engine.dispose()


def _running(jobs: JobStore, *, max_attempts: int = 1, handle: str = "h") -> uuid.UUID:
    job_id = jobs.create(function="noop", params={}, executor="local", max_attempts=max_attempts).id
    jobs.start(job_id, handle)
    return job_id


def test_a_timeout_fails_even_with_attempts_left(jobs: JobStore) -> None:
    job_id = _running(jobs, max_attempts=3)
    loss = Loss.timed_out(12.4)
    assert loss.cause is Cause.timed_out
    done = recover(jobs, job_id, loss, handle="h", unstarted=Unstarted.requeue)
    assert done is not None and done.status is Status.failed
    assert done.error is not None and done.error.type == "timeout"
    assert done.error.message == "timed out after 12 s"


@pytest.mark.parametrize(
    "loss",
    [
        Loss.crashed("the worker process died"),
        Loss.silent(30),
        Loss.orphaned("the server stopped"),
    ],
)
def test_other_losses_retry_while_attempts_remain_then_fail(jobs: JobStore, loss: Loss) -> None:
    job_id = _running(jobs, max_attempts=2)
    retried = recover(jobs, job_id, loss, handle="h", unstarted=Unstarted.fail)
    assert retried is not None and retried.status is Status.queued and retried.handle is None
    jobs.start(job_id, "h2")
    failed = recover(jobs, job_id, loss, handle="h2", unstarted=Unstarted.fail)
    assert failed is not None and failed.status is Status.failed
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("worker-lost", loss.message)


def test_a_cancel_past_its_grace_period_ends_cancelled(jobs: JobStore) -> None:
    job_id = _running(jobs, max_attempts=2)
    jobs.request_cancel(job_id)
    done = recover(jobs, job_id, Loss.cancel_overdue(), handle="h", unstarted=Unstarted.fail)
    assert done is not None and done.status is Status.cancelled and done.error is None


def test_a_timed_out_run_that_never_started_its_job_is_handed_out_again(jobs: JobStore) -> None:
    job_id = jobs.create(function="noop", params={}, executor="local").id
    assert jobs.claim(job_id, "local:a:1")
    loss = Loss.timed_out(5)
    assert recover(jobs, job_id, loss, handle="local:a:1", unstarted=Unstarted.requeue) is None
    job = jobs.get(job_id)
    assert job.status is Status.queued and job.handle is None and job.attempts == 0


def test_an_unstarted_job_fails_when_the_executor_says_so(jobs: JobStore) -> None:
    job_id = jobs.create(function="noop", params={}, executor="modal").id
    assert jobs.claim(job_id, "fc-1")
    loss = Loss.crashed("the call ended")
    # another holder's handle: not ours to fail
    assert recover(jobs, job_id, loss, handle="fc-other", unstarted=Unstarted.fail) is None
    done = recover(jobs, job_id, loss, handle="fc-1", unstarted=Unstarted.fail)
    assert done is not None and done.status is Status.failed
    assert done.error is not None and done.error.type == "executor"


def test_a_finished_job_is_left_alone(jobs: JobStore) -> None:
    job_id = _running(jobs, max_attempts=2)
    jobs.transition(job_id, Status.succeeded, result={})
    for loss in (Loss.timed_out(1), Loss.crashed("late news"), Loss.cancel_overdue()):
        for unstarted in Unstarted:
            assert recover(jobs, job_id, loss, handle="h", unstarted=unstarted) is None
    assert jobs.get(job_id).status is Status.succeeded


def test_silent_messages_name_the_timeout_and_the_detail() -> None:
    assert Loss.silent(30).message == "no heartbeat for 30 s"
    detail = Loss.silent(30, detail="Modal could not be asked (AuthError)")
    assert detail.message == "no heartbeat for 30 s and Modal could not be asked (AuthError)"
