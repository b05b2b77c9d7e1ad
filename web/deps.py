"""Dependencies as `Annotated` aliases, so a handler's signature says what it needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, WebSocket

from common.errors import NotFound
from common.jobs.models import JobRecord
from web.state import AppState


@dataclass(frozen=True)
class Principal:
    """Who is asking. Until an identity provider is configured every caller is the
    anonymous principal, who owns (and sees) the resources with no owner."""

    id: uuid.UUID | None
    role: str = "user"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, owner_id: uuid.UUID | None) -> bool:
        return self.is_admin or owner_id == self.id


ANONYMOUS = Principal(id=None)


def get_state(request: Request) -> AppState:
    return request.app.state.aperture  # type: ignore[no-any-return]


def get_ws_state(websocket: WebSocket) -> AppState:
    return websocket.app.state.aperture  # type: ignore[no-any-return]


def current_principal() -> Principal:
    return ANONYMOUS


State = Annotated[AppState, Depends(get_state)]
CurrentUser = Annotated[Principal, Depends(current_principal)]


def owned_job(job_id: uuid.UUID, state: State, user: CurrentUser) -> JobRecord:
    """The job if the caller may see it; another owner's job is 404, so ids do not leak."""
    job = state.runtime.jobs.get(job_id)
    if not user.may_see(job.owner_id):
        raise NotFound(f"no job with id {job_id}")
    return job


OwnedJob = Annotated[JobRecord, Depends(owned_job)]
