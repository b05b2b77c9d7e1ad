"""Local access tokens (JWT, HS256, Supabase's claim shape) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from common.errors import Unauthorized

AUDIENCE = "authenticated"
ALGORITHM = "HS256"


def issuer(public_url: str) -> str:
    return f"{public_url}/auth/v1"


def mint_access_token(
    *,
    key: bytes,
    public_url: str,
    user_id: uuid.UUID,
    email: str | None,
    role: str,
    session_id: uuid.UUID,
    ttl_s: int,
) -> str:
    """A JWT with the claims Supabase puts in its access tokens, so a frontend can
    treat both providers alike (`role` is the Postgres role; the app role is in
    `app_metadata.role`)."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": AUDIENCE,
        "iss": issuer(public_url),
        "iat": now,
        "exp": now + ttl_s,
        "email": email,
        "role": "authenticated",
        "session_id": str(session_id),
        "app_metadata": {"role": role, "provider": "local"},
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_access_token(token: str, *, key: bytes, public_url: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer(public_url),
            options={"require": ["sub", "exp", "iat", "aud", "iss", "session_id"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the access token has expired") from None
    except jwt.PyJWTError as error:
        raise Unauthorized(f"the access token is invalid: {error}") from None
    return claims


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
