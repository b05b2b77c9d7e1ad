"""The audit log: who did what, when, from where."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.logs import request_id_var
from common.records import AuditEvent, transaction
from common.records.types import utcnow


@dataclass(frozen=True)
class EventFilter:
    owner_id: uuid.UUID | None = None
    all_owners: bool = False
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class Audit:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def record(
        self,
        action: str,
        *,
        actor: uuid.UUID | None,
        target_type: str | None = None,
        target_id: object = None,
        subject: str | None = None,
        client_ip: str | None = None,
        **details: Any,
    ) -> None:
        with transaction(self.db) as session:
            session.add(
                AuditEvent(
                    owner_id=actor,
                    action=action,
                    target_type=target_type,
                    target_id=str(target_id) if target_id is not None else None,
                    subject=subject,
                    client_ip=client_ip,
                    request_id=request_id_var.get(),
                    details=details,
                    created_at=utcnow(),
                )
            )

    def count_recent(
        self,
        action: str,
        *,
        within: timedelta,
        subject: str | None = None,
        client_ip: str | None = None,
    ) -> int:
        query = select(func.count(AuditEvent.id)).where(
            AuditEvent.action == action, AuditEvent.created_at >= utcnow() - within
        )
        if subject is not None:
            query = query.where(AuditEvent.subject == subject)
        if client_ip is not None:
            query = query.where(AuditEvent.client_ip == client_ip)
        with self.db() as session:
            return session.scalar(query) or 0

    def find(self, f: EventFilter, *, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
        query = select(AuditEvent)
        if not f.all_owners:
            query = query.where(AuditEvent.owner_id == f.owner_id)
        for column, value in (
            (AuditEvent.action, f.action),
            (AuditEvent.target_type, f.target_type),
            (AuditEvent.target_id, f.target_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if f.since is not None:
            query = query.where(AuditEvent.created_at >= f.since)
        if f.until is not None:
            query = query.where(AuditEvent.created_at < f.until)
        with self.db() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
            ).all()
        return list(rows), total
