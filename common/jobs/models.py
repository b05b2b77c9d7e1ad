"""Read models of jobs and their events, shared by the runner, executors and the API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.jobs.status import Status


class JobError(BaseModel):
    type: str
    message: str


class JobRecord(BaseModel):
    """A job as stored; frozen, so nothing mutates a copy and believes it saved."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None
    function: str
    name: str | None
    tags: list[str]
    params: dict[str, Any]
    status: Status
    progress: float = Field(description="Fraction done, 0 to 1.")
    progress_message: str | None
    result: dict[str, Any] | None
    error: JobError | None
    attempts: int
    max_attempts: int
    parent_id: uuid.UUID | None
    executor: str
    handle: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobEventRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    job_id: uuid.UUID
    owner_id: uuid.UUID | None
    seq: int
    kind: str
    status: Status
    progress: float | None
    message: str | None
    created_at: datetime
