"""Who is asking: resolved once per request from a token, a cookie or an API key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    id: uuid.UUID
    role: str = "user"
    email: str | None = None
    session_id: uuid.UUID | None = None
    via: str = "token"  # token | cookie | api-key

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, owner_id: uuid.UUID | None) -> bool:
        """Admins see everything; everyone else only what they own."""
        return self.is_admin or owner_id == self.id
