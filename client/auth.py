"""Credentials: how each request proves who is asking, and how that proof is renewed.

- `ApiKey`: a key made with `POST /auth/api-keys`, sent as `X-API-Key` (or Bearer).
- `PasswordLogin`: a local account; logs in with `POST /auth/login`, renews the access
  token with `POST /auth/refresh` shortly before it expires and once after a 401.
- `SupabaseLogin`: a Supabase project; signs in with the `supabase` client
  (`auth.sign_in_with_password`) and sends its access token, renewed the same way.
- `BearerToken`: a token obtained elsewhere, sent as is.

Refresh tokens rotate: `on_tokens` hears every new pair, so a caller that keeps them
(the `aperture` command's config file) always holds the live one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from client.errors import Unauthorized, problem_from_response

#: Renew an access token this long before it expires.
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float
    """Unix time at which the access token stops working."""


TokensCallback = Callable[[Tokens], None]


class Credential(Protocol):
    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        """Headers proving identity, renewed first if they are about to expire."""
        ...

    async def renew(self, http: httpx.AsyncClient, rejected: dict[str, str]) -> bool:
        """After a 401 with `rejected` headers: renew, and say whether a retry may help."""
        ...


class Anonymous:
    """No credentials (a server that allows anonymous use, or only public routes)."""

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return {}

    async def renew(self, http: httpx.AsyncClient, rejected: dict[str, str]) -> bool:
        return False

    def __repr__(self) -> str:
        return "Anonymous()"


class ApiKey:
    def __init__(self, key: str, *, as_bearer: bool = False) -> None:
        self._header = {"Authorization": f"Bearer {key}"} if as_bearer else {"X-API-Key": key}
        self.key = key

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return dict(self._header)

    async def renew(self, http: httpx.AsyncClient, rejected: dict[str, str]) -> bool:
        return False  # a key that is refused stays refused

    def __repr__(self) -> str:
        return f"ApiKey({self.key[:8]}...)"


class BearerToken:
    def __init__(self, token: str) -> None:
        self.token = token

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def renew(self, http: httpx.AsyncClient, rejected: dict[str, str]) -> bool:
        return False

    def __repr__(self) -> str:
        return "BearerToken(...)"


class _Renewing:
    """Shared logic of token credentials (an email and password, or a refresh token kept
    from an earlier sign-in): one renewal at a time, and none when another request
    already renewed the token that was refused."""

    def __init__(
        self,
        on_tokens: TokensCallback | None,
        email: str | None,
        password: str | None,
        refresh_token: str | None,
    ) -> None:
        if not (email and password) and not refresh_token:
            raise ValueError("give an email and password, or a refresh token")
        self.tokens: Tokens | None = None
        self.email = email
        self._password = password
        self._refresh_token = refresh_token
        self._on_tokens = on_tokens
        self._lock: asyncio.Lock | None = None

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _accept(self, tokens: Tokens) -> None:
        self.tokens = tokens
        if self._on_tokens is not None:
            self._on_tokens(tokens)

    async def _obtain(self, http: httpx.AsyncClient) -> Tokens:
        raise NotImplementedError

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        async with self._locked():
            tokens = self.tokens
            if tokens is None or tokens.expires_at - time.time() < REFRESH_MARGIN_S:
                tokens = await self._obtain(http)
                self._accept(tokens)
        return {"Authorization": f"Bearer {tokens.access_token}"}

    async def renew(self, http: httpx.AsyncClient, rejected: dict[str, str]) -> bool:
        async with self._locked():
            current = self.tokens
            if current is not None and rejected.get("Authorization") != (
                f"Bearer {current.access_token}"
            ):
                return True  # another request renewed it meanwhile
            self._accept(await self._obtain(http))
        return True


class PasswordLogin(_Renewing):
    """A local account: email and password, or a refresh token kept from an earlier
    sign-in (then no password is needed, or stored)."""

    def __init__(
        self,
        email: str | None = None,
        password: str | None = None,
        *,
        refresh_token: str | None = None,
        on_tokens: TokensCallback | None = None,
    ) -> None:
        super().__init__(on_tokens, email, password, refresh_token)

    def __repr__(self) -> str:
        return f"PasswordLogin(email={self.email!r})"

    async def _obtain(self, http: httpx.AsyncClient) -> Tokens:
        refresh = self.tokens.refresh_token if self.tokens else self._refresh_token
        if refresh:
            response = await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
            if response.is_success or not (self.email and self._password):
                return _tokens_from(response)
        response = await http.post(
            "/api/v1/auth/login", json={"email": self.email, "password": self._password}
        )
        return _tokens_from(response)


def _tokens_from(response: httpx.Response) -> Tokens:
    if not response.is_success:
        raise problem_from_response(response)
    body = response.json()
    return Tokens(
        body["access_token"], body["refresh_token"], time.time() + float(body["expires_in"])
    )


class SupabaseLogin(_Renewing):
    """A Supabase project's account, signed in with the `supabase` client. The client is
    imported only here, so scripts using keys or local accounts never load it."""

    def __init__(
        self,
        supabase_url: str,
        supabase_key: str,
        email: str | None = None,
        password: str | None = None,
        *,
        refresh_token: str | None = None,
        on_tokens: TokensCallback | None = None,
    ) -> None:
        super().__init__(on_tokens, email, password, refresh_token)
        self.supabase_url = supabase_url
        self._key = supabase_key
        self._client: Any = None

    def __repr__(self) -> str:
        return f"SupabaseLogin({self.supabase_url!r}, email={self.email!r})"

    def _supabase(self) -> Any:
        if self._client is None:
            from supabase import ClientOptions, create_client

            # Renewal is ours (before expiry, and after a 401): no timer threads.
            options = ClientOptions(auto_refresh_token=False, persist_session=False)
            self._client = create_client(self.supabase_url, self._key, options=options)
        return self._client

    def _sign_in(self) -> Tokens:
        auth = self._supabase().auth
        refresh = self.tokens.refresh_token if self.tokens else self._refresh_token
        if refresh:
            try:
                return _session_tokens(auth.refresh_session(refresh).session)
            except Exception:
                if not (self.email and self._password):
                    raise
        credentials = {"email": self.email, "password": self._password}
        return _session_tokens(auth.sign_in_with_password(credentials).session)

    async def _obtain(self, http: httpx.AsyncClient) -> Tokens:
        try:
            return await asyncio.to_thread(self._sign_in)  # the supabase client blocks
        except Exception as error:
            if isinstance(error, Unauthorized):
                raise
            raise Unauthorized(
                401, "supabase-sign-in", "Unauthorized", f"Supabase sign-in failed: {error}"
            ) from error


def _session_tokens(session: Any) -> Tokens:
    if session is None:
        raise ValueError("Supabase returned no session")
    expires_at = session.expires_at or time.time() + float(session.expires_in)
    return Tokens(session.access_token, session.refresh_token, float(expires_at))
