"""One settings class for the whole service, read from `APERTURE_*` variables and `.env`.

The embedded defaults (SQLite + a data directory + local worker processes) need no
configuration at all; production values (PostgreSQL, S3, Modal, Supabase) come from
the environment. Validators refuse unsafe combinations instead of warning about them.
Deep Zoom's settings are one group of it (`Settings.tiles`, `APERTURE_TILES_*`), a plain
model the tile code takes on its own, so it runs without the rest of the service.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    production = "production"


class TileSettings(BaseModel):
    """Deep Zoom settings (`APERTURE_TILES_<NAME>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tile_size: int = Field(default=254, ge=1, le=4096)
    overlap: int = Field(default=1, ge=0, le=64)
    format: str = Field(default="jpeg", pattern="^(jpeg|png)$")
    quality: int = Field(default=75, ge=1, le=100)
    limit_bounds: bool = False
    max_handles: int = Field(default=32, ge=1, description="Open slides kept in the handle LRU.")
    cache_bytes: int = Field(default=256 << 20, ge=0, description="Rendered-tile cache budget.")
    shared_cache_bytes: int = Field(
        default=1 << 30,
        ge=0,
        description="Rendered tiles kept on disk in the data directory, shared by the web "
        "processes (0: none).",
    )
    decoded_cache_bytes: int = Field(
        default=512 << 20,
        ge=0,
        description="Decoded stored-tile cache budget (shared out among the web processes). "
        "A Deep Zoom tile reads 4 to 9 stored tiles its neighbours read too: at 128 MiB "
        "a random walk over a 12,000 x 9,000 slide decoded a third more tiles than at 512.",
    )
    local_cache_bytes: int = Field(
        default=10 << 30,
        ge=0,
        description="Local copies of slides from stores without "
        "local files (S3), least recently used evicted.",
    )
    pyramid_check_s: float = Field(
        default=30.0,
        ge=0,
        description="How long the answer to 'has this slide a pre-generated pyramid?' is reused.",
    )


class Settings(BaseSettings):
    # A nested group is read from APERTURE_<GROUP>_<NAME> (split once): APERTURE_TILES_OVERLAP.
    model_config = SettingsConfigDict(
        env_prefix="APERTURE_",
        env_file=".env",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        frozen=True,
    )

    environment: Environment = Environment.development
    data_dir: Path = Path(".aperture")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL clients reach the API on; used to build signed URLs.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs URLs and local access tokens. Generated into the data dir "
        "in development; required in production.",
    )

    # records
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file in the data dir."
    )

    # objects
    object_store: Literal["dir", "s3"] = "dir"
    objects_dir: Path | None = Field(default=None, description="Default: <data_dir>/objects.")
    s3_endpoint_url: str | None = None
    s3_bucket: str = "aperture"
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    import_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders whose files users may import by path (JSON list).",
    )
    storage_quota_bytes: int = Field(
        default=1024**4, ge=0, description="Bytes each user may store (1 TiB by default)."
    )
    max_upload_bytes: int = Field(
        default=5 * 1024**4, ge=1, description="Largest single file (S3's limit, 5 TiB)."
    )
    upload_url_ttl_s: int = Field(
        default=24 * 3600, ge=60, description="Lifetime of multipart part URLs."
    )
    download_redirect: bool = Field(
        default=False,
        description="S3 backend: downloads answer 307 to a short-lived "
        "presigned URL instead of streaming through the API.",
    )
    signed_url_ttl_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    download_url_ttl_s: int = Field(
        default=300,
        ge=1,
        le=7 * 24 * 3600,
        description="Lifetime of the presigned URL a download redirects to.",
    )
    upload_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="Cleanup aborts multipart uploads started longer ago than this.",
    )
    cleanup_interval_s: float = Field(
        default=3600, ge=0, description="How often `serve` runs cleanup (0: never)."
    )
    tmp_ttl_s: int = Field(
        default=24 * 3600,
        ge=60,
        description="Cleanup deletes objects under tmp/ older than this.",
    )

    # execution
    executor: Literal["local", "modal"] = "local"
    workers: int = Field(default=2, ge=1, le=256, description="Local worker processes.")
    worker_idle_exit_s: float = Field(
        default=60.0,
        ge=0,
        description="Extra local workers (beyond `workers` and one warm spare) idle this "
        "long exit.",
    )
    web_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Web processes of `aperture serve` (default: from the CPU count).",
    )
    cancel_grace_s: float = Field(
        default=5.0,
        ge=0,
        description="Time a cancelled job gets to stop before its worker is killed.",
    )
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, description="A running job silent for this long is treated as dead."
    )
    extra_capabilities: list[str] = Field(
        default_factory=list,
        description="Extra modules to import into the capability registry (plugins, tests).",
    )
    modal_app: str = "aperture"
    modal_cleanup_cron: str = Field(
        default="0 3 * * *",
        description="Modal schedule (cron, UTC) of the cleanup function; read at deploy.",
    )

    # identity
    auth_provider: Literal["local", "supabase"] = "local"
    allow_registration: bool = Field(
        default=True, description="Local provider: anyone may register an account."
    )
    access_token_ttl_s: int = Field(default=900, ge=5, le=24 * 3600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    login_window_s: int = Field(default=900, ge=1, description="Failed-login counting window.")
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=50, ge=1)
    cookie_secure: bool = Field(
        default=True,
        description="Send auth cookies only over HTTPS (localhost is exempt in browsers).",
    )
    principal_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a verified credential's principal is reused by a web "
        "process; a revoked session, key or account is refused within this time (0: "
        "check every request).",
    )
    supabase_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    supabase_jwks_cooldown_s: float = Field(
        default=30.0,
        ge=0,
        description="Least time between two JWKS fetches forced by "
        "unknown key ids (a flood of made-up kids cannot hammer Supabase).",
    )

    # slides
    tiles: TileSettings = TileSettings()

    # inference
    inference_external_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        le=23 * 3600,
        description="An external inference service that reports nothing for this long "
        "times its task out (the task fails and the service is told to stop).",
    )
    inference_callback_max_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        description="Largest webhook body (predictions sent inline); a service with more "
        "sends predictions_url instead.",
    )
    inference_predictions_max_bytes: int = Field(
        default=1 << 30,
        ge=1024,
        description="Largest predictions file fetched from a service's predictions_url.",
    )

    # web
    cors_origins: list[str] = Field(default_factory=list)
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.environment is Environment.production:
            if self.secret_key is None or len(self.secret_key.get_secret_value()) < 32:
                raise ValueError(
                    "APERTURE_SECRET_KEY of at least 32 characters is required in production"
                )
            if "*" in self.cors_origins:
                raise ValueError("APERTURE_CORS_ORIGINS='*' is not allowed in production")
        if self.object_store == "s3" and not self.s3_bucket:
            raise ValueError("APERTURE_S3_BUCKET is required with APERTURE_OBJECT_STORE=s3")
        return self

    # derived values -------------------------------------------------------------

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'aperture.db').resolve()}"

    @cached_property
    def resolved_objects_dir(self) -> Path:
        return (self.objects_dir or self.data_dir / "objects").resolve()

    @cached_property
    def signing_key(self) -> bytes:
        """The secret behind signed URLs and local tokens.

        In development an unset key is generated once and kept in the data dir, so
        worker processes and restarts agree on it without any configuration.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            # link() refuses to overwrite: two processes racing here agree on one key.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        return path.read_text().strip().encode()
