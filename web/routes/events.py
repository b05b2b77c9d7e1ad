"""The audit log: your own events; administrators see everyone's."""

from __future__ import annotations

from fastapi import APIRouter

from common.identity.audit import EventFilter
from web.deps import CurrentUser, State
from web.fields import LabelQuery, Limit, Offset, TimestampQuery
from web.schemas import AuditEventPublic, Page

router = APIRouter(prefix="/events", tags=["events"])


@router.get("")
def read_events(
    user: CurrentUser,
    state: State,
    action: LabelQuery = None,
    target_type: LabelQuery = None,
    target_id: LabelQuery = None,
    since: TimestampQuery = None,
    until: TimestampQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
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
