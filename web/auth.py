"""Turning a request's credentials into a `Principal`.

Accepted, in order: `Authorization: Bearer <access token | API key>`, `X-API-Key`, the
httponly access cookie. Cookie-authenticated unsafe requests must also send the CSRF
token (double submit: the `X-CSRF-Token` header equals the readable CSRF cookie).

Verifying a credential costs a database read (is the session live, the key unrevoked,
the account active?), more than serving a cached tile. So each web process keeps the
principal of a verified credential for `APERTURE_PRINCIPAL_CACHE_S` seconds (never past
an access token's own expiry), bounded in size. Revocation therefore takes effect:

- at once in the process that revokes (logout, a revoked session or API key, a
  deactivated or re-roled account, a reused refresh token): any such write through this
  process's database sessions empties its cache (`PrincipalCache.watch`);
- within `APERTURE_PRINCIPAL_CACHE_S` in every other process of the deployment.

Only successes are kept; a refused credential is checked again on every request. An API
key's `last_used_at` is written when the key is verified, so at most once per TTL.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

import jwt
from fastapi import Response
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from starlette.requests import HTTPConnection

from common.errors import Forbidden, Unauthorized
from common.identity import Identity, Principal, TokenPair
from common.identity.api_keys import looks_like_api_key
from common.records import ApiKey, AuthSession, User
from common.settings import Settings

ACCESS_COOKIE = "aperture_access"
REFRESH_COOKIE = "aperture_refresh"
CSRF_COOKIE = "aperture_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
REFRESH_PATH = "/api/v1/auth"
#: Credentials remembered per process at most; the oldest go first.
PRINCIPAL_CACHE_ENTRIES = 4096

#: (how it came: "token" | "api-key" | "cookie", the credential itself)
Credential = tuple[str, str]

#: Identity tables, and the columns whose change can end a principal's access.
_REVOKING = {
    AuthSession.__tablename__: {"revoked_at", "expires_at"},
    ApiKey.__tablename__: {"revoked_at", "expires_at", "owner_id", "key_hash"},
    User.__tablename__: {"is_active", "role", "email", "password_hash", "deleted_at"},
}


class PrincipalCache:
    """Verified credentials' principals for a few seconds (see the module docstring)."""

    def __init__(self, ttl_s: float, max_entries: int = PRINCIPAL_CACHE_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Credential, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PrincipalCache(ttl_s={self.ttl_s}, entries={len(self._entries)})"

    def get(self, credential: Credential) -> Principal | None:
        entry = self._entries.get(credential)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            with self._lock:
                self._entries.pop(credential, None)
            return None
        return entry[1]

    def put(self, credential: Credential, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        lifetime = min(self.ttl_s, _token_lifetime(credential))
        if lifetime <= 0:
            return
        with self._lock:
            self._entries[credential] = (time.monotonic() + lifetime, principal)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def watch(self, db: sessionmaker[Session]) -> None:
        """Empty the cache whenever a session of `db` changes what grants access (see
        `_REVOKING`): at once, and again when that transaction commits."""

        def on_execute(state: ORMExecuteState) -> None:
            if (state.is_update or state.is_delete) and _revokes(state.statement):
                self.clear()
                state.session.info["aperture_revokes"] = True

        def on_flush(session: Session, _context: Any) -> None:
            changed = (*session.dirty, *session.deleted)
            if any(type(row).__tablename__ in _REVOKING for row in changed):
                self.clear()
                session.info["aperture_revokes"] = True

        def on_commit(session: Session) -> None:
            if session.info.pop("aperture_revokes", False):
                self.clear()

        event.listen(db, "do_orm_execute", on_execute)
        event.listen(db, "after_flush", on_flush)
        event.listen(db, "after_commit", on_commit)


def _revokes(statement: Any) -> bool:
    table = getattr(getattr(statement, "table", None), "name", None)
    watched = _REVOKING.get(table or "")
    if watched is None:
        return False
    if statement.is_delete:
        return True
    updated = {getattr(column, "key", str(column)) for column in statement._values or {}}
    return bool(updated & watched)


def _token_lifetime(credential: Credential) -> float:
    """Seconds an access token has left (API keys: unbounded here; their expiry is
    checked against the database, at most `ttl_s` ago)."""
    kind, value = credential
    if kind == "api-key" or looks_like_api_key(value):
        return float("inf")
    try:
        exp = jwt.decode(value, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return 0.0
    return float(exp) - time.time() if isinstance(exp, int | float) else 0.0


def _bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if header and (scheme.lower() != "bearer" or not value.strip()):
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip() or None


def credential_of(connection: HTTPConnection, *, allow_query_token: bool = False) -> Credential:
    """The credential a request carries, by precedence; Unauthorized if none."""
    if token := _bearer(connection):
        return ("api-key" if looks_like_api_key(token) else "token", token)
    if key := connection.headers.get("x-api-key"):
        return ("api-key", key)
    if allow_query_token and (token := connection.query_params.get("access_token")):
        return ("api-key" if looks_like_api_key(token) else "token", token)
    if cookie := connection.cookies.get(ACCESS_COOKIE):
        return ("cookie", cookie)
    raise Unauthorized(
        "authentication is required: send a bearer token, an API key or the session cookie"
    )


def _verify(identity: Identity, credential: Credential) -> Principal:
    kind, value = credential
    if kind == "api-key" or looks_like_api_key(value):
        return identity.api_keys.principal(value)
    via = "cookie" if kind == "cookie" else "token"
    if identity.supabase is not None:
        return identity.supabase.principal(value, via=via)
    return identity.accounts.principal_from_local_token(value, via=via)


def cached_principal(connection: HTTPConnection, cache: PrincipalCache | None) -> Principal | None:
    """The principal from `cache` if the request's credential is there (no I/O: fit for
    the event loop), CSRF checked; None when it must be verified (`authenticate`)."""
    if cache is None:
        return None
    credential = credential_of(connection)
    principal = cache.get(credential)
    if principal is not None:
        _check_csrf_if_cookie(connection, credential)
    return principal


def authenticate(
    connection: HTTPConnection,
    identity: Identity,
    *,
    allow_query_token: bool = False,
    cache: PrincipalCache | None = None,
) -> Principal:
    """The caller's principal, or Unauthorized/Forbidden saying what is wrong."""
    credential = credential_of(connection, allow_query_token=allow_query_token)
    principal = cache.get(credential) if cache is not None else None
    if principal is None:
        principal = _verify(identity, credential)
        if cache is not None:
            cache.put(credential, principal)
    _check_csrf_if_cookie(connection, credential)
    return principal


def _check_csrf_if_cookie(connection: HTTPConnection, credential: Credential) -> None:
    """Whatever the cookie holds, a cookie-authenticated unsafe request needs the CSRF
    token."""
    if credential[0] == "cookie" and connection.scope.get("method", "GET") not in SAFE_METHODS:
        _check_csrf(connection)


def _check_csrf(connection: HTTPConnection) -> None:
    cookie = connection.cookies.get(CSRF_COOKIE, "")
    header = connection.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie, header):
        raise Forbidden(
            "cookie-authenticated requests that change state need the "
            "X-CSRF-Token header matching the aperture_csrf cookie"
        )


def set_auth_cookies(response: Response, pair: TokenPair, settings: Settings) -> None:
    secure = settings.cookie_secure
    response.set_cookie(
        ACCESS_COOKIE,
        pair.access_token,
        max_age=pair.expires_in,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=settings.refresh_token_ttl_s,
        httponly=True,
        secure=secure,
        samesite="lax",
        path=REFRESH_PATH,
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=settings.refresh_token_ttl_s,
        httponly=False,
        secure=secure,
        samesite="lax",
        path="/",
    )


def clear_auth_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH)
    response.delete_cookie(CSRF_COOKIE, path="/")
