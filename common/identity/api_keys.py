"""API keys for scripts: shown once, stored as SHA-256 with a visible prefix, expiring,
revocable."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from common.errors import InvalidInput, NotFound, Unauthorized
from common.identity.principal import Principal
from common.identity.tokens import sha256_hex
from common.records import ApiKey, User, transaction
from common.records.types import utcnow

KEY_PREFIX = "ap_"


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    key: str  # the only time the whole key exists outside the client


class ApiKeys:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def create(self, owner_id: uuid.UUID, name: str, expires_at: datetime | None) -> NewKey:
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInput("expires_at must be in the future")
        visible = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{visible}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=uuid.uuid4(),
            owner_id=owner_id,
            name=name,
            prefix=f"{KEY_PREFIX}{visible}",
            key_hash=sha256_hex(key),
            created_at=utcnow(),
            expires_at=expires_at,
        )
        with transaction(self.db) as session:
            session.add(record)
        return NewKey(record=record, key=key)

    def list(self, owner_id: uuid.UUID) -> list[ApiKey]:
        with self.db() as session:
            return list(
                session.scalars(
                    select(ApiKey)
                    .where(ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
                    .order_by(ApiKey.created_at.desc())
                )
            )

    def revoke(self, owner_id: uuid.UUID, key_id: uuid.UUID) -> None:
        with transaction(self.db) as session:
            revoked = session.scalar(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow())
                .returning(ApiKey.id)
            )
        if revoked is None:
            raise NotFound(f"no API key with id {key_id}")

    def principal(self, key: str) -> Principal:
        """The owner of a live key; Unauthorized for unknown, revoked or expired keys."""
        digest = sha256_hex(key)
        with self.db() as session:
            row = session.execute(
                select(ApiKey, User)
                .join(User, User.id == ApiKey.owner_id)
                .where(ApiKey.key_hash == digest)
            ).one_or_none()
        # The lookup is by hash; comparing again in constant time costs nothing and keeps
        # the check honest if the lookup ever changes.
        if row is None or not hmac.compare_digest(row.ApiKey.key_hash, digest):
            raise Unauthorized("the API key is not valid")
        now = utcnow()
        if row.ApiKey.revoked_at is not None:
            raise Unauthorized("the API key was revoked")
        if row.ApiKey.expires_at is not None and row.ApiKey.expires_at <= now:
            raise Unauthorized("the API key has expired")
        if not row.User.is_active:
            raise Unauthorized("the account is deactivated")
        with transaction(self.db) as session:
            session.execute(
                update(ApiKey).where(ApiKey.id == row.ApiKey.id).values(last_used_at=now)
            )
        return Principal(id=row.User.id, role=row.User.role, email=row.User.email, via="api-key")
