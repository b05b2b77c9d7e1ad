"""Users: administrators manage accounts; everyone manages their own."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from common.errors import Conflict, InvalidInput
from web.deps import Admin, CurrentUser, RequestClient, State
from web.fields import Limit, Offset
from web.schemas import MeUpdate, Page, UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
def read_own_user(user: CurrentUser, state: State) -> UserPublic:
    """The signed-in account."""
    return UserPublic.model_validate(state.identity.accounts.user(user.id))


@router.patch("/me")
def update_own_user(
    body: MeUpdate, user: CurrentUser, state: State, client: RequestClient
) -> UserPublic:
    """Change your display name, or your password (with the current one)."""
    changes = body.model_dump(exclude_unset=True, exclude={"current_password"})
    if "password" in changes:
        if not body.current_password:
            raise InvalidInput("changing the password needs current_password")
        state.identity.accounts.check_password(user.id, body.current_password)
    updated = state.identity.accounts.update_user(user.id, changes)
    state.identity.audit.record(
        "user.updated",
        actor=user.id,
        target_type="user",
        target_id=user.id,
        client_ip=client.ip,
        fields=sorted(changes),
    )
    return UserPublic.model_validate(updated)


@router.get("")
def read_users(
    admin: Admin,
    state: State,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[UserPublic]:
    """Every account (admins)."""
    users, total = state.identity.accounts.users(limit=limit, offset=offset)
    return Page[UserPublic](
        items=[UserPublic.model_validate(u) for u in users], total=total, limit=limit, offset=offset
    )


@router.post("", status_code=201)
def create_user(body: UserCreate, admin: Admin, state: State, client: RequestClient) -> UserPublic:
    """Create an account (admins)."""
    user = state.identity.accounts.create_user(
        body.email, body.password, role=body.role, display_name=body.display_name
    )
    state.identity.audit.record(
        "user.created",
        actor=admin.id,
        target_type="user",
        target_id=user.id,
        client_ip=client.ip,
        role=body.role,
    )
    return UserPublic.model_validate(user)


@router.get("/{user_id}")
def read_user(user_id: uuid.UUID, admin: Admin, state: State) -> UserPublic:
    """One account (admins)."""
    return UserPublic.model_validate(state.identity.accounts.user(user_id))


@router.patch("/{user_id}")
def update_user(
    user_id: uuid.UUID, body: UserUpdate, admin: Admin, state: State, client: RequestClient
) -> UserPublic:
    """Change an account's email, password, role or name (admins; your own role stays
    admin: 409)."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("role", "admin") != "admin":
        _not_yourself(user_id, admin, "take the admin role from")
    updated = state.identity.accounts.update_user(user_id, changes)
    state.identity.audit.record(
        "user.updated",
        actor=admin.id,
        target_type="user",
        target_id=user_id,
        client_ip=client.ip,
        fields=sorted(changes),
    )
    return UserPublic.model_validate(updated)


def _not_yourself(user_id: uuid.UUID, admin: Admin, what: str) -> None:
    """An admin who locks out their own account may lock out the deployment."""
    if user_id == admin.id:
        raise Conflict(f"you cannot {what} your own account; ask another administrator")


def _set_active(
    user_id: uuid.UUID, active: bool, admin: Admin, state: State, client: RequestClient
) -> UserPublic:
    updated = state.identity.accounts.update_user(user_id, {"is_active": active})
    state.identity.audit.record(
        "user.activated" if active else "user.deactivated",
        actor=admin.id,
        target_type="user",
        target_id=user_id,
        client_ip=client.ip,
    )
    return UserPublic.model_validate(updated)


@router.post("/{user_id}/deactivate")
def deactivate_user(
    user_id: uuid.UUID, admin: Admin, state: State, client: RequestClient
) -> UserPublic:
    """Deactivate an account: its tokens and keys stop working at once (admins; not your
    own account: 409)."""
    _not_yourself(user_id, admin, "deactivate")
    return _set_active(user_id, False, admin, state, client)


@router.post("/{user_id}/activate")
def activate_user(
    user_id: uuid.UUID, admin: Admin, state: State, client: RequestClient
) -> UserPublic:
    """Activate an account again (admins)."""
    return _set_active(user_id, True, admin, state, client)
