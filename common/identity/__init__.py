"""Identity: local accounts (argon2id, JWT access tokens, rotating refresh tokens),
Supabase tokens, API keys, and the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from common.identity.accounts import Accounts, Client, TokenPair
from common.identity.api_keys import ApiKeys
from common.identity.audit import Audit
from common.identity.principal import Principal
from common.identity.supabase import SupabaseVerifier
from common.runtime import Runtime


@dataclass
class Identity:
    accounts: Accounts
    api_keys: ApiKeys
    audit: Audit
    supabase: SupabaseVerifier | None

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Identity:
        audit = Audit(runtime.db)
        settings = runtime.settings
        supabase = (
            SupabaseVerifier(runtime.db, settings) if settings.auth_provider == "supabase" else None
        )
        return cls(
            accounts=Accounts(runtime.db, settings, audit),
            api_keys=ApiKeys(runtime.db),
            audit=audit,
            supabase=supabase,
        )


__all__ = ["Client", "Identity", "Principal", "TokenPair"]
