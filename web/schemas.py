"""Request and response bodies of the API (per resource: XCreate, XUpdate, XPublic, XList)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from common.capabilities import Resources
from common.identity.passwords import MAX_LENGTH as PASSWORD_MAX
from common.identity.passwords import MIN_LENGTH as PASSWORD_MIN
from common.jobs.models import JobEventRecord, JobRecord
from web.fields import Email, JsonObject, Label, ServerPath, Tag

T = TypeVar("T")

#: A new password: the policy's length (it also wants 4 different characters and not
#: the email, which a schema cannot say).
NewPassword = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
DisplayName = Annotated[Label, Field(max_length=128)]
Tags = Annotated[list[Tag], Field(max_length=32, description="Labels; repeats are merged.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class BulkDelete(BaseModel):
    """Ids to delete at once (files, slides)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


class BulkDeleted(BaseModel):
    deleted: list[uuid.UUID]
    not_found: list[uuid.UUID]


class FileSource(BaseModel):
    """Exactly one of a stored file (`file_id`) or a server path under the import roots."""

    # The schema says "exactly one" as oneOf over the two required sets; a null stands
    # for leaving the field out, so the schema does not offer it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["file_id"]}, {"required": ["file_path"]}]},
    )

    file_id: uuid.UUID | SkipJsonSchema[None] = None
    file_path: ServerPath | SkipJsonSchema[None] = Field(
        None, description="Absolute path under the import roots."
    )

    @model_validator(mode="after")
    def _one_source(self) -> FileSource:
        if (self.file_id is None) == (self.file_path is None):
            raise ValueError("give exactly one of file_id or file_path")
        return self


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: Annotated[Label, Field(min_length=1, max_length=128)]
    params: JsonObject = Field(default_factory=dict)
    name: Annotated[Label, Field(max_length=256)] | None = None
    tags: Tags = Field(default_factory=list)


class JobUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Label, Field(max_length=256)] | None = None
    tags: Tags | None = None


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

    email: Email
    password: NewPassword
    role: Literal["admin", "user"] = "user"
    display_name: DisplayName | None = None


class UserUpdate(BaseModel):
    """Admin edit of an account; every field optional."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    password: NewPassword | None = None
    role: Literal["admin", "user"] | None = None
    display_name: DisplayName | None = None


class MeUpdate(BaseModel):
    """What users may change of their own account (a new password needs the current one)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"dependentRequired": {"password": ["current_password"]}}
    )

    display_name: DisplayName | None = None
    password: NewPassword | SkipJsonSchema[None] = None
    current_password: (
        Annotated[str, Field(min_length=1, max_length=1024)] | SkipJsonSchema[None]
    ) = None

    @model_validator(mode="before")
    @classmethod
    def _no_null_passwords(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("password", "current_password"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null (leave it out instead)")
        return data


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
