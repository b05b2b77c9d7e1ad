"""Where `aperture login` keeps the server and credential, and how a command gets its
client from them.

The file is `<user config dir>/aperture/credentials.json` (platformdirs: on Linux
`$XDG_CONFIG_HOME/aperture`, else `~/.config/aperture`), created with mode 0600. It
holds an API key or a refresh token, never a password; refresh tokens rotate and the
new one is written back. `APERTURE_URL` and `APERTURE_API_KEY` override the file, for
scripts and CI, and need no file at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from client.api import AsyncClient
from client.auth import ApiKey, Credential, PasswordLogin, SupabaseLogin, Tokens
from client.errors import NotSignedIn


def config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("aperture")) / "credentials.json"


def load(path: Path | None = None) -> dict[str, Any] | None:
    try:
        data = json.loads((path or config_path()).read_text())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def save(data: dict[str, Any], path: Path | None = None) -> Path:
    """Written atomically, readable by its owner only (it holds a credential)."""
    target = path or config_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".credentials-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def credential_from(auth: dict[str, Any], *, persist: bool = True) -> Credential:
    """The credential a saved `auth` block describes; rotated refresh tokens are saved."""
    kind = auth.get("kind")
    if kind == "api_key":
        return ApiKey(str(auth["key"]))

    def keep(tokens: Tokens) -> None:
        if persist and (data := load()) is not None and data.get("auth", {}).get("kind") == kind:
            data["auth"]["refresh_token"] = tokens.refresh_token
            save(data)

    if kind == "password":
        return PasswordLogin(
            email=auth.get("email"), refresh_token=auth["refresh_token"], on_tokens=keep
        )
    if kind == "supabase":
        return SupabaseLogin(
            auth["supabase_url"],
            auth["supabase_key"],
            email=auth.get("email"),
            refresh_token=auth["refresh_token"],
            on_tokens=keep,
        )
    raise NotSignedIn(f"unknown credential kind {kind!r} in {config_path()}; run `aperture login`")


def client_from_environment(**options: Any) -> AsyncClient:
    """A client for the configured server: `APERTURE_URL`/`APERTURE_API_KEY` first, then
    what `aperture login` saved."""
    saved = load() or {}
    url = os.environ.get("APERTURE_URL") or saved.get("url")
    if not url:
        raise NotSignedIn(
            "no server configured: run `aperture login --url URL` or set APERTURE_URL"
        )
    if key := os.environ.get("APERTURE_API_KEY"):
        return AsyncClient(url, ApiKey(key), **options)
    if "auth" not in saved:
        raise NotSignedIn("not signed in: run `aperture login` or set APERTURE_API_KEY")
    if saved.get("url", "").rstrip("/") != url.rstrip("/"):
        raise NotSignedIn(
            f"the saved login is for {saved.get('url')}, not {url}: "
            "set APERTURE_API_KEY or run `aperture login` for it"
        )
    return AsyncClient(url, credential_from(saved["auth"]), **options)
