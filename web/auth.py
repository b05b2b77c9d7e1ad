"""Turning a request's credentials into a `Principal`.

Accepted, in order: `Authorization: Bearer <access token | API key>`, `X-API-Key`, the
httponly access cookie. Cookie-authenticated unsafe requests must also send the CSRF
token (double submit: the `X-CSRF-Token` header equals the readable CSRF cookie).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Response
from starlette.requests import HTTPConnection

from common.errors import Forbidden, Unauthorized
from common.identity import Identity, Principal, TokenPair
from common.identity.api_keys import looks_like_api_key
from common.settings import Settings

ACCESS_COOKIE = "aperture_access"
REFRESH_COOKIE = "aperture_refresh"
CSRF_COOKIE = "aperture_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
REFRESH_PATH = "/api/v1/auth"


def _bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if header and (scheme.lower() != "bearer" or not value.strip()):
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip() or None


def _token_principal(identity: Identity, token: str, via: str) -> Principal:
    if looks_like_api_key(token):
        return identity.api_keys.principal(token)
    if identity.supabase is not None:
        return identity.supabase.principal(token, via=via)
    return identity.accounts.principal_from_local_token(token, via=via)


def authenticate(
    connection: HTTPConnection, identity: Identity, *, allow_query_token: bool = False
) -> Principal:
    """The caller's principal, or Unauthorized/Forbidden saying what is wrong."""
    if token := _bearer(connection):
        return _token_principal(identity, token, "token")
    if key := connection.headers.get("x-api-key"):
        return identity.api_keys.principal(key)
    if allow_query_token and (token := connection.query_params.get("access_token")):
        return _token_principal(identity, token, "token")
    if cookie := connection.cookies.get(ACCESS_COOKIE):
        principal = _token_principal(identity, cookie, "cookie")
        method = connection.scope.get("method", "GET")
        if method not in SAFE_METHODS:
            _check_csrf(connection)
        return principal
    raise Unauthorized(
        "authentication is required: send a bearer token, an API key or the session cookie"
    )


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
