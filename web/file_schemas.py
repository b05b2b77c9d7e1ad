"""Request and response bodies of the files API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.sniff import EXTENSIONS
from common.text import FILE_NAME_PATTERN, name_with_extension_pattern
from web.fields import MAX_BIGINT, Label, ServerPath
from web.schemas import FilePublic

#: A file name as `common.naming.safe_name` takes it (at most 255 bytes in UTF-8).
FileName = Annotated[
    Label, Field(min_length=1, max_length=255, json_schema_extra={"pattern": FILE_NAME_PATTERN})
]
#: The name of an upload: its extension says which types it may be.
UploadName = Annotated[
    Label,
    Field(
        min_length=1,
        max_length=255,
        json_schema_extra={"pattern": name_with_extension_pattern(list(EXTENSIONS))},
        description=f"Ends in an accepted extension: {', '.join(sorted(EXTENSIONS))}.",
    ),
]


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: UploadName
    size: int = Field(
        ge=1, le=MAX_BIGINT, description="Exact size in bytes; checked at completion."
    )
    content_type: Annotated[Label, Field(max_length=255)] | None = None
    sha256: str | None = Field(
        default=None, pattern="^[0-9a-fA-F]{64}$", description="Verified at completion if given."
    )
    dataset_id: uuid.UUID | None = None


class PartPublic(BaseModel):
    number: int
    url: str


class UploadPlan(BaseModel):
    id: uuid.UUID
    name: str
    size: int
    part_size: int
    part_count: int
    parts: list[PartPublic]


class StoredPart(BaseModel):
    number: int
    etag: str
    size: int


class UploadPublic(BaseModel):
    id: uuid.UUID
    name: str
    size: int
    status: str
    part_size: int
    part_count: int
    parts: list[StoredPart]
    file_id: uuid.UUID | None


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=128)


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=10_000)
    sha256: str | None = Field(
        default=None,
        pattern="^[0-9a-fA-F]{64}$",
        description="The whole file's SHA-256, if known only now (a client that hashed "
        "while sending): verified like one given at the start, before the file is recorded.",
    )


class FileImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: ServerPath
    name: FileName | None = None


class FileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FileName | None = None
    dataset_id: uuid.UUID | None = None


class Usage(BaseModel):
    bytes: int
    files: int
    by_kind: dict[str, dict[str, int]]
    by_owner: dict[str, Any] | None = None


class SlideState(BaseModel):
    """Where a whole-slide image is on its way to the viewer: its `metadata` job reads it
    and makes its slide record (`ready`), or says why it cannot (`failed`)."""

    status: Literal["pending", "ready", "failed"]
    slide_id: uuid.UUID | None = Field(default=None, description="Set when ready.")
    reason: str | None = Field(default=None, description="Why it failed.")


class FileDetail(FilePublic):
    """One file: its record, and for a whole-slide image the job that reads it and the
    state of its slide."""

    metadata_job_id: uuid.UUID | None = Field(
        default=None, description="The `metadata` job started for it on upload (slides)."
    )
    slide: SlideState | None = Field(default=None, description="Whole-slide images only.")
