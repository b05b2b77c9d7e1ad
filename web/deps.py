"""Dependencies as `Annotated` aliases, so a handler's signature says what it needs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from starlette.concurrency import run_in_threadpool

from common.errors import Forbidden, NotFound
from common.identity import Client, Principal
from common.jobs.models import JobRecord
from web.auth import authenticate
from web.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.aperture  # type: ignore[no-any-return]


def get_ws_state(websocket: WebSocket) -> AppState:
    return websocket.app.state.aperture  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


async def current_principal(request: Request, state: State) -> Principal:
    """Who is asking (401 without valid credentials)."""
    return await run_in_threadpool(authenticate, request, state.identity)


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise Forbidden("this needs the admin role")
    return user


Admin = Annotated[Principal, Depends(require_admin)]


def client_of(request: Request) -> Client:
    return Client(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


RequestClient = Annotated[Client, Depends(client_of)]


def owned_job(job_id: uuid.UUID, state: State, user: CurrentUser) -> JobRecord:
    """The job if the caller may see it; another owner's job is 404, so ids do not leak."""
    job = state.runtime.jobs.get(job_id)
    if not user.may_see(job.owner_id):
        raise NotFound(f"no job with id {job_id}")
    return job


OwnedJob = Annotated[JobRecord, Depends(owned_job)]
