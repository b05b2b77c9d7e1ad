"""Accounts and credentials: register, login, refresh, logout, me, sessions, API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from common.errors import NotFound, Unauthorized
from common.identity import TokenPair
from web.auth import REFRESH_COOKIE, clear_auth_cookies, set_auth_cookies
from web.deps import CurrentUser, RequestClient, State
from web.fields import Email, Label, Timestamp
from web.schemas import NewPassword, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: str = Field(min_length=1, max_length=1024)


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: NewPassword


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[Label, Field(max_length=512)] | None = None


class TokensPublic(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class SessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    client_ip: str | None
    current: bool = False


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Label, Field(min_length=1, max_length=128)]
    expires_at: Timestamp | None = Field(default=None, description="In the future; none: never.")


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The whole key. It is shown this once and never again.")


def _local_only(state: State) -> None:
    if state.settings.auth_provider != "local":
        raise NotFound("accounts are managed by Supabase with this deployment")


def _tokens(pair: TokenPair, response: Response, state: State) -> TokensPublic:
    set_auth_cookies(response, pair, state.settings)
    return TokensPublic(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


@router.post("/register", status_code=201)
def create_account(body: Registration, state: State, client: RequestClient) -> UserPublic:
    """Create a local account (when registration is open)."""
    _local_only(state)
    if not state.settings.allow_registration:
        raise NotFound("registration is closed; ask an administrator for an account")
    user = state.identity.accounts.create_user(body.email, body.password)
    state.identity.audit.record(
        "user.registered", actor=user.id, target_type="user", target_id=user.id, client_ip=client.ip
    )
    return UserPublic.model_validate(user)


@router.post("/login")
def create_login(
    body: Credentials, state: State, client: RequestClient, response: Response
) -> TokensPublic:
    """Exchange email and password for tokens (also set as httponly cookies)."""
    _local_only(state)
    return _tokens(
        state.identity.accounts.login(body.email, body.password, client), response, state
    )


@router.post("/refresh")
def create_refresh(
    request: Request,
    state: State,
    client: RequestClient,
    response: Response,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> TokensPublic:
    """Rotate a refresh token (from the body or the cookie) into a new token pair."""
    _local_only(state)
    token = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise Unauthorized("send the refresh token in the body or the refresh cookie")
    return _tokens(state.identity.accounts.refresh(token, client), response, state)


@router.post("/logout", status_code=204)
def delete_login(user: CurrentUser, state: State, client: RequestClient) -> Response:
    """End the current session: its refresh tokens stop working, cookies are cleared."""
    if user.session_id is not None:
        state.identity.accounts.revoke_session(user.id, user.session_id, "logout")
    state.identity.audit.record(
        "auth.logout",
        actor=user.id,
        target_type="session",
        target_id=user.session_id,
        client_ip=client.ip,
    )
    response = Response(status_code=204)
    clear_auth_cookies(response)
    return response


@router.get("/me")
def read_me(user: CurrentUser, state: State) -> UserPublic:
    """The signed-in account."""
    return UserPublic.model_validate(state.identity.accounts.user(user.id))


@router.get("/sessions")
def read_sessions(user: CurrentUser, state: State) -> list[SessionPublic]:
    """Active sessions of the signed-in account."""
    return [
        SessionPublic.model_validate(s).model_copy(update={"current": s.id == user.session_id})
        for s in state.identity.accounts.sessions(user.id)
    ]


@router.delete("/sessions/{session_id}", status_code=204)
def delete_session(
    session_id: uuid.UUID, user: CurrentUser, state: State, client: RequestClient
) -> Response:
    """Revoke one session; its tokens stop working at once."""
    state.identity.accounts.revoke_session(user.id, session_id, "revoked")
    state.identity.audit.record(
        "auth.session_revoked",
        actor=user.id,
        target_type="session",
        target_id=session_id,
        client_ip=client.ip,
    )
    return Response(status_code=204)


@router.post("/api-keys", status_code=201)
def create_api_key(
    body: ApiKeyCreate, user: CurrentUser, state: State, client: RequestClient
) -> ApiKeyCreated:
    """Create an API key for scripts; the key is in this answer only."""
    new = state.identity.api_keys.create(user.id, body.name, body.expires_at)
    state.identity.audit.record(
        "api_key.created",
        actor=user.id,
        target_type="api_key",
        target_id=new.record.id,
        client_ip=client.ip,
    )
    return ApiKeyCreated(**ApiKeyPublic.model_validate(new.record).model_dump(), key=new.key)


@router.get("/api-keys")
def read_api_keys(user: CurrentUser, state: State) -> list[ApiKeyPublic]:
    """Live API keys of the signed-in account (prefixes only)."""
    return [ApiKeyPublic.model_validate(k) for k in state.identity.api_keys.list(user.id)]


@router.delete("/api-keys/{key_id}", status_code=204)
def delete_api_key(
    key_id: uuid.UUID, user: CurrentUser, state: State, client: RequestClient
) -> Response:
    """Revoke an API key; it stops working at once."""
    state.identity.api_keys.revoke(user.id, key_id)
    state.identity.audit.record(
        "api_key.revoked",
        actor=user.id,
        target_type="api_key",
        target_id=key_id,
        client_ip=client.ip,
    )
    return Response(status_code=204)
