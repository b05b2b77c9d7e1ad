"""Verifying Supabase access tokens: ES256/RS256 through the project's JWKS (cached,
refetched on an unknown `kid`), HS256 through the legacy JWT secret; `exp`, `aud` and
`iss` checked. Users are created on first sight, keyed by `sub`."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import Unauthorized
from common.identity.principal import Principal
from common.records import User, transaction
from common.records.types import utcnow
from common.settings import Settings

ASYMMETRIC = ("ES256", "RS256")
AUDIENCE = "authenticated"
ROLES = {"admin", "user"}


class SupabaseVerifier:
    def __init__(self, db: sessionmaker[Session], settings: Settings) -> None:
        if not settings.supabase_url:
            raise ValueError("APERTURE_SUPABASE_URL is required with the supabase provider")
        self.db = db
        self.issuer = f"{settings.supabase_url.rstrip('/')}/auth/v1"
        self.secret = (
            settings.supabase_jwt_secret.get_secret_value()
            if settings.supabase_jwt_secret
            else None
        )
        # PyJWKClient caches keys and fetches the set again when a kid is unknown, at
        # most once per cooldown.
        self.jwks = jwt.PyJWKClient(
            f"{self.issuer}/.well-known/jwks.json",
            cache_keys=True,
            lifespan=600,
            timeout=5,
            cooldown_duration=settings.supabase_jwks_cooldown_s,
        )

    def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the access token is malformed: {error}") from None
        algorithm = header.get("alg")
        if algorithm in ASYMMETRIC:
            try:
                key: Any = self.jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as error:
                raise Unauthorized(f"no signing key for this token: {error}") from None
        elif algorithm == "HS256" and self.secret:
            key = self.secret
        else:
            raise Unauthorized(f"tokens signed with {algorithm!r} are not accepted")
        try:
            # One algorithm per key type: an HS256 token can never be checked against a
            # public key (algorithm confusion), nor an RS256 one against the secret.
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["sub", "exp", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(f"the access token is invalid: {error}") from None

    def principal(self, token: str, *, via: str) -> Principal:
        claims = self.claims(token)
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthorized("the token's subject is not a user id") from None
        role = (claims.get("app_metadata") or {}).get("role")
        role = role if role in ROLES else "user"
        user = self._user(user_id, claims.get("email"), role)
        if not user.is_active:
            raise Unauthorized("the account is deactivated")
        return Principal(id=user.id, role=user.role, email=user.email, via=via)

    def _user(self, user_id: uuid.UUID, email: str | None, role: str) -> User:
        with self.db() as session:
            user = session.get(User, user_id)
        if user is not None:
            if user.role != role:  # Supabase's app_metadata is the source of truth
                with transaction(self.db) as session:
                    session.get(User, user_id).role = role  # type: ignore[union-attr]
                user.role = role
            return user
        now = utcnow()
        user = User(
            id=user_id,
            email=email,
            role=role,
            is_active=True,
            provider="supabase",
            created_at=now,
            updated_at=now,
        )
        try:
            with transaction(self.db) as session:
                session.add(user)
        except IntegrityError:  # first sight raced with another request
            with self.db() as session:
                found = session.get(User, user_id)
            if found is None:
                raise
            return found
        return user
