"""One HTTP connection pool to the API: credentials on every request, one renewal after
a 401, retries of what is safe to retry, and non-2xx answers turned into typed errors.

URLs the API hands out (presigned S3 part URLs, the directory store's signed part
endpoint, S3 download redirects) carry their own signature: they are sent without the
caller's credentials, which must never reach a storage host.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from client.auth import Anonymous, Credential
from client.errors import ProblemError, problem_from_response

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "aperture-client/0.1"


def _no_cookies() -> http.cookiejar.CookieJar:
    """Identity travels in headers only: login answers also set cookies, and a client
    that sent them back would be cookie-authenticated (and need CSRF tokens)."""
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class Transport:
    def __init__(
        self,
        base_url: str,
        credential: Credential | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential: Credential = credential or Anonymous()
        self.retries = retries
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            "limits": httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            "cookies": httpx.Cookies(_no_cookies()),
            "headers": {"User-Agent": USER_AGENT},
            "follow_redirects": False,
        }
        self.http = httpx.AsyncClient(**options)
        # Bulk bytes move on threads through a blocking client (see client.fetch).
        self.blocking = httpx.Client(**options)

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r}, {self.credential!r})"

    async def aclose(self) -> None:
        await self.http.aclose()
        self.blocking.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A request to the API; a non-2xx answer raises its `ProblemError`."""
        renewed = False
        attempt = 0
        query = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            auth = await self.credential.headers(self.http)
            try:
                response = await self.http.request(
                    method,
                    path,
                    json=json,
                    params=query,
                    content=content,
                    files=files,
                    headers={**auth, **(headers or {})},
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as error:
                # A refused connection never reached the server: any method may go again.
                # A dropped one may have: only idempotent methods are sent twice.
                again = isinstance(error, httpx.ConnectError) or method in IDEMPOTENT
                if attempt >= self.retries or not again:
                    raise
                attempt += 1
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code == 401 and not renewed:
                renewed = True
                if await self.credential.renew(self.http, auth):
                    continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                attempt += 1
                await asyncio.sleep(_retry_after(response) or _backoff(attempt))
                continue
            if not response.is_success and not response.is_redirect:
                raise problem_from_response(response)
            return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed answer (events, downloads); one redirect to another host (an S3
        presigned URL) is followed without credentials."""
        for renewing in (False, True):
            auth = await self.credential.headers(self.http)
            extra = {} if timeout is None else {"timeout": timeout}
            request = self.http.build_request(
                method, path, headers={**auth, **(headers or {})}, **extra
            )
            response = await self.http.send(request, stream=True)
            if response.status_code == 401 and not renewing:
                await response.aclose()
                if await self.credential.renew(self.http, auth):
                    continue
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                location = response.headers["location"]
                request = self.http.build_request(method, location, **extra)
                response = await self.http.send(request, stream=True)
            try:
                if not response.is_success:
                    await response.aread()
                    raise problem_from_response(response)
                yield response
            finally:
                await response.aclose()
            return

    async def put_signed(self, url: str, data: bytes) -> str:
        """PUT one part to a signed URL; its ETag (unquoted). Retried: a part may be sent
        again, the later copy wins."""
        attempt = 0
        while True:
            try:
                # On a thread through the blocking client: one sendall of the whole part
                # (the socket releases the GIL) instead of event-loop writes.
                response = await asyncio.to_thread(self.blocking.put, url, content=data)
            except httpx.TransportError:
                if attempt >= self.retries:
                    raise
            else:
                if response.is_success:
                    return response.headers.get("etag", "").strip('"')
                if response.status_code < 500 or attempt >= self.retries:
                    raise problem_from_response(response)
            attempt += 1
            await asyncio.sleep(_backoff(attempt))


def _backoff(attempt: int) -> float:
    return float(min(0.25 * 2 ** (attempt - 1), 8.0))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers.get("retry-after", "")), 30.0)
    except ValueError:
        return None


__all__ = ["ProblemError", "Transport"]
