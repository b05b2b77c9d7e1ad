"""Dependencies as `Annotated` aliases, so a handler's signature says what it needs.

FastAPI runs a plain `def` dependency in a worker thread; the ones here that do no I/O
are `async def`, so they run on the event loop and cost no thread hand-off (a cached
tile's request would otherwise pay several)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request, WebSocket
from starlette.concurrency import run_in_threadpool

from common.capabilities import StoredFile
from common.errors import Forbidden, InvalidInput, NotFound
from common.identity import Client, Principal
from common.imports import resolve_import_path
from common.jobs.models import JobRecord
from web.auth import PrincipalCache, authenticate, cached_principal
from web.schemas import FileSource
from web.state import AppState


async def get_state(request: Request) -> AppState:
    return request.app.state.aperture  # type: ignore[no-any-return]


async def get_ws_state(websocket: WebSocket) -> AppState:
    return websocket.app.state.aperture  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


def principal_cache(request: Request) -> PrincipalCache | None:
    """The app's cache of verified credentials (web.auth), built in the lifespan."""
    return getattr(request.app.state, "principals", None)


async def current_principal(request: Request, state: State) -> Principal:
    """Who is asking (401 without valid credentials). A credential verified moments ago
    is answered from the cache on the event loop; others are checked in a thread."""
    cache = principal_cache(request)
    principal = cached_principal(request, cache)
    if principal is not None:
        return principal
    return await run_in_threadpool(authenticate, request, state.identity, cache=cache)


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def require_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise Forbidden("this needs the admin role")
    return user


Admin = Annotated[Principal, Depends(require_admin)]


async def client_of(request: Request) -> Client:
    return Client(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


RequestClient = Annotated[Client, Depends(client_of)]


class Owned(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def owner_id(self) -> uuid.UUID | None: ...


R = TypeVar("R", bound=Owned)


def visible_to(user: Principal, record: R, what: str) -> R:
    """`record` if `user` may see it; another owner's `what` is 404, so ids do not leak."""
    if not user.may_see(record.owner_id):
        raise NotFound(f"no {what} with id {record.id}")
    return record


def owned_job(job_id: uuid.UUID, state: State, user: CurrentUser) -> JobRecord:
    """The job if the caller may see it (404 otherwise)."""
    return visible_to(user, state.runtime.jobs.get(job_id), "job")


OwnedJob = Annotated[JobRecord, Depends(owned_job)]


def check_function(job: JobRecord, function: str | tuple[str, ...], what: str) -> JobRecord:
    """`job` if it runs `function` (or one of them); another kind of job is 422, saying
    which it is."""
    if job.function not in ((function,) if isinstance(function, str) else function):
        raise InvalidInput(f"job {job.id} is a {job.function!r} job, not {what}")
    return job


def owned_job_of(
    function: str | tuple[str, ...], what: str
) -> Callable[[JobRecord], Awaitable[JobRecord]]:
    """A dependency: the caller's job (404 otherwise), if it is a job of `function` (or
    of one of them; 422 otherwise), whatever its status."""

    async def dependency(job: OwnedJob) -> JobRecord:
        return check_function(job, function, what)

    return dependency


class SourceFiles:
    """Resolves a request's `FileSource` to the caller's stored file: a stored file by id
    (another owner's is 404), or a server path under the import roots, imported first as
    the caller's file (checked like an upload)."""

    def __init__(self, state: AppState, user: Principal) -> None:
        self.state = state
        self.user = user

    def __repr__(self) -> str:
        return f"SourceFiles(user={self.user.id})"

    def __call__(self, source: FileSource) -> StoredFile:
        if source.file_id is not None:
            return self.state.runtime.files.get(source.file_id, owner_id=self.user.id)
        path = resolve_import_path(source.file_path or "", self.state.settings.import_roots)
        return self.state.import_file(self.user, path)


async def source_files(state: State, user: CurrentUser) -> SourceFiles:
    return SourceFiles(state, user)


Sources = Annotated[SourceFiles, Depends(source_files)]
