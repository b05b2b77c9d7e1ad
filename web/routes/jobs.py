"""Jobs: submit, list, stats, read, rename/tag, cancel, logs and live events (SSE)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidInput
from common.jobs.models import JobEventRecord
from common.jobs.queries import JobFilter
from common.jobs.status import Status
from web.deps import CurrentUser, OwnedJob, RequestClient, State
from web.http import JOB_ACCEPTED, job_location
from web.schemas import JobCreate, JobEventPublic, JobPublic, JobStatsPublic, JobUpdate, Page

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_TAG_LENGTH = 64


def _check_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    for tag in tags:
        if not tag or len(tag) > MAX_TAG_LENGTH or any(ord(ch) < 32 for ch in tag):
            raise InvalidInput(f"tags must be 1 to {MAX_TAG_LENGTH} printable characters")
    return list(dict.fromkeys(tags))


def job_filter(
    user: CurrentUser,
    status: Status | None = None,
    function: str | None = None,
    tag: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> JobFilter:
    """The listing filters from the query string, scoped to what the caller may see."""
    return JobFilter(
        owner_id=user.id,
        all_owners=user.is_admin,
        status=status,
        function=function,
        tag=tag,
        created_after=created_after,
        created_before=created_before,
    )


Filter = Annotated[JobFilter, Depends(job_filter)]


@router.post("", **JOB_ACCEPTED)
def create_job(
    body: JobCreate,
    state: State,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> JobPublic:
    """Submit a job: params are validated against the function's schema, and what they
    name is checked before the job exists (a missing file is 404, a channel the file
    lacks 422)."""
    job = state.submit_job(
        user, client, body.function, body.params, name=body.name, tags=_check_tags(body.tags)
    )
    job_location(request, response, job.id)
    return job


@router.get("")
def read_jobs(
    state: State,
    f: Filter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[JobPublic]:
    """Jobs, newest first, filtered by status, function, tag and creation time."""
    items, total = state.runtime.queries.find(f, limit=limit, offset=offset)
    return Page[JobPublic](items=items, total=total, limit=limit, offset=offset)


@router.get("/stats")
def read_job_stats(state: State, f: Filter) -> JobStatsPublic:
    """Counts by status and function, and run-time p50/p95 of finished jobs."""
    stats = state.runtime.queries.stats(f)
    return JobStatsPublic(**stats.__dict__)


@router.get("/{job_id}")
def read_job(job: OwnedJob) -> JobPublic:
    """One job."""
    return job


@router.patch("/{job_id}")
def update_job(job: OwnedJob, body: JobUpdate, state: State) -> JobPublic:
    """Rename or re-tag a job (its status changes only through its own life)."""
    return state.runtime.jobs.update_labels(
        job.id,
        name=body.name,
        tags=_check_tags(body.tags),
        fields=body.model_fields_set,
    )


@router.post("/{job_id}/cancel")
def cancel_job(job: OwnedJob, state: State, user: CurrentUser, client: RequestClient) -> JobPublic:
    """Cancel: a queued job ends at once; a running one winds down, then is stopped."""
    return state.cancel_job(user, client, job.id)


@router.delete("/{job_id}/cancel")
def cancel_job_by_delete(
    job: OwnedJob, state: State, user: CurrentUser, client: RequestClient
) -> JobPublic:
    """Same as POST /jobs/{id}/cancel, for clients that cancel with DELETE."""
    return cancel_job(job, state, user, client)


@router.get("/{job_id}/logs")
def read_job_logs(
    job: OwnedJob,
    state: State,
    after: Annotated[int, Query(ge=0, description="Return events after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[JobEventPublic]:
    """The job's event log (status changes, progress, log lines) in order."""
    return state.runtime.queries.events(job.id, after_seq=after, limit=limit)


def _sse(event: JobEventRecord) -> dict[str, Any]:
    return {"id": str(event.seq), "event": event.kind, "data": event.model_dump_json()}


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def read_job_events(
    job: OwnedJob,
    state: State,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Server-Sent Events of the job's changes; resumable with `Last-Event-ID`; the stream
    ends after the job's final status."""
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an event id (an integer)") from None
    return EventSourceResponse(_job_stream(state, job.id, after), ping=15)


async def _job_stream(state: State, job_id: uuid.UUID, after: int) -> AsyncIterator[dict[str, Any]]:
    queries = state.runtime.queries
    async with state.hub.subscribe(lambda event: event.job_id == job_id) as queue:
        # Read history only once subscribed, so no event falls between the two.
        for event in await run_in_threadpool(queries.events, job_id, after_seq=after):
            yield _sse(event)
            after = event.seq
        if (await run_in_threadpool(state.runtime.jobs.get, job_id)).status.terminal:
            for event in await run_in_threadpool(queries.events, job_id, after_seq=after):
                yield _sse(event)
            return
        while (news := await queue.get()) is not None:
            if news.seq <= after:
                continue
            yield _sse(news)
            after = news.seq
            if news.kind == "status" and news.status.terminal:
                return
