"""Request and response bodies of the API (per resource: XCreate, XUpdate, XPublic, XList)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.capabilities import Resources
from common.jobs.models import JobEventRecord, JobRecord

T = TypeVar("T")

Tag = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class FileSource(BaseModel):
    """Exactly one of a stored file (`file_id`) or a server path under the import roots."""

    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID | None = None
    file_path: str | None = Field(None, description="Absolute path under the import roots.")

    @model_validator(mode="after")
    def _one_source(self) -> FileSource:
        if (self.file_id is None) == (self.file_path is None):
            raise ValueError("give exactly one of file_id or file_path")
        return self


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=256)
    tags: list[str] = Field(default_factory=list, max_length=32)


class JobUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256)
    tags: list[str] | None = Field(default=None, max_length=32)


JobPublic = JobRecord
JobEventPublic = JobEventRecord


class JobStatsPublic(BaseModel):
    total: int
    by_status: dict[str, int]
    by_function: dict[str, dict[str, int]]
    duration_p50_s: float | None
    duration_p95_s: float | None


class FunctionPublic(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    result_schema: dict[str, Any]
    resources: Resources


class FilePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    name: str
    size: int
    sha256: str | None
    kind: str | None
    content_type: str | None
    dataset_id: uuid.UUID | None = None
    details: dict[str, Any] | None = Field(
        default=None, description="Derived metadata when known (dimensions, channels...)."
    )
    created_at: datetime | None = None


class Check(BaseModel):
    ok: bool
    detail: dict[str, Any] = Field(default_factory=dict)


class HealthPublic(BaseModel):
    status: str = Field(description='"ok" when every check passes, else "degraded".')
    version: str
    checks: dict[str, Check]


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    role: str
    is_active: bool
    display_name: str | None
    provider: str
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    role: Literal["admin", "user"] = "user"
    display_name: str | None = Field(default=None, max_length=128)


class UserUpdate(BaseModel):
    """Admin edit of an account; every field optional."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, min_length=3, max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    role: Literal["admin", "user"] | None = None
    display_name: str | None = Field(default=None, max_length=128)


class MeUpdate(BaseModel):
    """What users may change of their own account."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=128)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: uuid.UUID | None
    action: str
    target_type: str | None
    target_id: str | None
    subject: str | None
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime
