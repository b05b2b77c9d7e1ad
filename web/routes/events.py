"""The audit log: your own events; administrators see everyone's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from common.identity.audit import EventFilter
from web.deps import CurrentUser, State
from web.schemas import AuditEventPublic, Page

router = APIRouter(prefix="/events", tags=["events"])


@router.get("")
def read_events(
    user: CurrentUser,
    state: State,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[AuditEventPublic]:
    """Who did what, newest first, filtered by action, target and time."""
    f = EventFilter(
        owner_id=user.id,
        all_owners=user.is_admin,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
    )
    rows, total = state.identity.audit.find(f, limit=limit, offset=offset)
    return Page[AuditEventPublic](
        items=[AuditEventPublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
