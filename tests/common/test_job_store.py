"""Job transitions on SQLite and PostgreSQL: legal moves, refused moves, one winner under
concurrency, gap-free events, retries, cancellation and queries."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import IllegalTransition, NotFound
from common.jobs import JobStore, Status
from common.jobs.queries import JobFilter, JobQueries
from common.records import make_engine, make_sessionmaker, migrate


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[JobStore, JobQueries]]:
    engine = make_engine(database_url)
    migrate(engine)
    db = make_sessionmaker(engine)
    yield JobStore(db), JobQueries(db)
    engine.dispose()


def _new(jobs: JobStore, **kwargs) -> uuid.UUID:  # type: ignore[no-untyped-def]
    values = {"function": "noop", "params": {}, "executor": "local", **kwargs}
    return jobs.create(**values).id


def test_happy_path_writes_one_event_per_change(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    job_id = _new(jobs)
    assert jobs.start(job_id, "h").attempts == 1
    assert jobs.report(job_id, kind="progress", progress=0.5, message="half") is Status.running
    assert jobs.report(job_id, kind="log", message="hello") is Status.running
    done = jobs.transition(job_id, Status.succeeded, result={"x": 1})
    assert done.status is Status.succeeded and done.finished_at is not None
    events = queries.events(job_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.kind for e in events] == ["status", "status", "progress", "log", "status"]
    assert [e.status for e in events][-1] is Status.succeeded


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Status.queued, Status.succeeded),
        (Status.queued, Status.cancelling),
        (Status.succeeded, Status.running),
        (Status.failed, Status.cancelled),
        (Status.cancelled, Status.queued),
    ],
)
def test_illegal_transitions_are_refused(stores, start: Status, target: Status) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    job_id = _new(jobs)
    if start is not Status.queued:
        jobs.start(job_id, "h")
        if start is Status.cancelled:
            jobs.transition(job_id, Status.cancelling)
        if start is not Status.running:
            jobs.transition(job_id, start)
    before = len(queries.events(job_id))
    with pytest.raises(IllegalTransition, match=f"is {start.value}"):
        jobs.transition(job_id, target)
    assert jobs.get(job_id).status is start
    assert len(queries.events(job_id)) == before  # a refused move leaves no trace


def test_unknown_job_is_not_found(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, _ = stores
    with pytest.raises(NotFound):
        jobs.transition(uuid.uuid4(), Status.running)


def test_only_one_of_many_concurrent_starts_wins(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    job_id = _new(jobs)
    winners: list[object] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        barrier.wait()
        if jobs.start(job_id, f"h{n}") is not None:
            winners.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert jobs.get(job_id).attempts == 1
    assert [e.seq for e in queries.events(job_id)] == [1, 2]


def test_concurrent_reports_keep_event_numbers_gap_free(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    job_id = _new(jobs)
    jobs.start(job_id, "h")

    def report(n: int) -> None:
        for i in range(10):
            jobs.report(job_id, kind="log", message=f"{n}-{i}")

    threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in queries.events(job_id)]
    assert seqs == list(range(1, 43))


def test_lost_worker_retries_then_fails(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, _ = stores
    job_id = _new(jobs, max_attempts=2)
    jobs.start(job_id, "h")
    retried = jobs.lose(job_id, "worker died")
    assert retried is not None and retried.status is Status.queued and retried.handle is None
    jobs.start(job_id, "h2")
    failed = jobs.lose(job_id, "worker died again")
    assert failed is not None and failed.status is Status.failed
    assert failed.error is not None and failed.error.message == "worker died again"
    assert jobs.lose(job_id, "late news") is None  # already terminal: nothing changes


def test_cancel_queued_is_immediate_and_running_goes_through_cancelling(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, _ = stores
    queued = _new(jobs)
    assert jobs.request_cancel(queued).status is Status.cancelled
    running = _new(jobs)
    jobs.start(running, "h")
    assert jobs.request_cancel(running).status is Status.cancelling
    assert jobs.report(running, kind="log", message="winding down") is Status.cancelling
    assert jobs.lose(running, "killed").status is Status.cancelled
    with pytest.raises(IllegalTransition):
        jobs.request_cancel(running)


def test_statuses_of_many_jobs_in_one_query(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, _ = stores
    queued, running = _new(jobs), _new(jobs)
    jobs.start(running, "h")
    missing = uuid.uuid4()
    got = jobs.statuses([queued, running, missing])
    assert got == {queued: Status.queued, running: Status.running}  # missing: left out


def test_claims_are_exclusive_and_releasable(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    job_id = _new(jobs)
    assert queries.unclaimed("local") == [job_id]
    assert jobs.claim(job_id, "a") and not jobs.claim(job_id, "b")
    assert queries.unclaimed("local") == []
    assert not jobs.unclaim(job_id, "b") and jobs.unclaim(job_id, "a")
    assert queries.unclaimed("local") == [job_id]


def test_list_filters_and_pagination(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    owner = uuid.uuid4()
    ids = [_new(jobs, owner_id=owner, tags=["batch", f"n{i}"]) for i in range(5)]
    _new(jobs, owner_id=owner, function="checksum", tags=['we"ird'])
    _new(jobs, owner_id=uuid.uuid4(), tags=["batch"])
    mine = JobFilter(owner_id=owner)
    page, total = queries.find(mine, limit=2, offset=0)
    assert total == 6 and len(page) == 2
    assert queries.find(JobFilter(owner_id=owner, tag="batch"))[1] == 5
    assert queries.find(JobFilter(owner_id=owner, tag='we"ird'))[1] == 1
    assert queries.find(JobFilter(owner_id=owner, tag="n3"))[0][0].id == ids[3]
    assert queries.find(JobFilter(owner_id=owner, function="checksum"))[1] == 1
    assert queries.find(JobFilter(all_owners=True, tag="batch"))[1] == 6
    assert queries.find(JobFilter())[1] == 0  # no owner given: only ownerless jobs
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert queries.find(JobFilter(owner_id=owner, created_after=later))[1] == 0
    jobs.start(ids[0], "h")
    assert queries.find(JobFilter(owner_id=owner, status=Status.running))[1] == 1


def test_stats_count_and_time(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    for _ in range(3):
        job_id = _new(jobs)
        jobs.start(job_id, "h")
        jobs.transition(job_id, Status.succeeded)
    _new(jobs, function="checksum")
    stats = queries.stats(JobFilter())
    assert stats.total == 4
    assert stats.by_status["succeeded"] == 3 and stats.by_status["queued"] == 1
    assert stats.by_function == {"noop": {"succeeded": 3}, "checksum": {"queued": 1}}
    assert stats.duration_p50_s is not None and 0 <= stats.duration_p50_s < 5
    assert stats.duration_p95_s is not None and stats.duration_p95_s >= stats.duration_p50_s


def test_stale_finds_silent_active_jobs(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, _ = stores
    job_id = _new(jobs)
    jobs.start(job_id, "h")
    assert jobs.stale(timedelta(seconds=60)) == []
    assert [j.id for j in jobs.stale(timedelta(seconds=-1))] == [job_id]


def test_what_the_modal_supervisor_watches(stores) -> None:  # type: ignore[no-untyped-def]
    jobs, queries = stores
    future = datetime.now(UTC) + timedelta(minutes=1)
    past = datetime.now(UTC) - timedelta(minutes=1)
    waiting = _new(jobs, executor="modal")
    assert queries.unclaimed("modal", updated_before=past) == []  # young: its submitter acts
    assert queries.unclaimed("modal", updated_before=future) == [waiting]
    assert queries.unclaimed("local") == []
    jobs.claim(waiting, "fc-1")
    assert queries.status_by_handle("fc-1") is Status.queued
    assert queries.status_by_handle("fc-none") is None
    running = _new(jobs, executor="modal")
    jobs.start(running, "fc-2")
    submitting = _new(jobs, executor="modal")
    jobs.claim(submitting, "placeholder")
    quiet = {j.id for j in queries.quiet("modal", since=future, skip_handle="placeholder")}
    assert quiet == {waiting, running}  # not the placeholder's, not another executor's
    assert queries.quiet("modal", since=past, skip_handle="placeholder") == []  # all beat
    jobs.request_cancel(running)
    assert [j.id for j in queries.cancelling_since("modal", future)] == [running]
    assert queries.cancelling_since("modal", past) == []  # asked too recently
    assert queries.cancelling_since("local", future) == []
