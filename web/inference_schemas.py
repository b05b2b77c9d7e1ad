"""Request and response bodies of the inference API (CytoLens's shape, under /api/v1):
models, external services, tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.jobs.models import JobError
from common.jobs.status import Status
from common.text import NAME_PATTERN, label_error
from functions.inference.params import Device, OnnxInput, OnnxOutput, Region

OutputKind = Literal["segmentation", "detection", "classification"]
ModelKind = Literal["builtin", "onnx", "external"]
#: Names the builtin models have; registered models and services may not take them.
BUILTIN_NAMES = frozenset({"nuclei-he"})


def _printable_name(value: str) -> str:
    if (why := label_error(value)) is not None:
        raise ValueError(f"a name {why}")
    value = value.strip()
    if not value:
        raise ValueError("a name needs a character that is not a space")
    if value in BUILTIN_NAMES:
        raise ValueError(f"{value!r} is a builtin model's name")
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError("a name may not be a UUID (models are also named by id)")


class ModelOutputPublic(BaseModel):
    kind: OutputKind
    classes: list[str]


class InferenceModelPublic(BaseModel):
    """A model `POST /inference` can run, named by `id` or `name`."""

    id: str = Field(description="The builtin's name, or the registered model's or service's id.")
    name: str
    kind: ModelKind
    description: str | None = None
    params_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema (with defaults) of the `params` it takes."
    )
    mpp: float | None = Field(default=None, description="Input resolution, µm per pixel.")
    tile: int | None = None
    overlap: int | None = None
    output: ModelOutputPublic
    measurements: list[str] | None = None
    input: dict[str, Any] | None = Field(default=None, description="ONNX: the input declaration.")
    file_id: uuid.UUID | None = Field(default=None, description="ONNX: the .onnx file.")
    created_at: datetime | None = None


class OnnxModelCreate(BaseModel):
    """Register an uploaded `.onnx` file; its graph is checked against the declaration."""

    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN})
    input: OnnxInput
    output: OnnxOutput

    _name = field_validator("name")(_printable_name)


class ServiceOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: OutputKind = "segmentation"
    classes: list[str] = Field(min_length=1, max_length=64)


class ServiceCreate(BaseModel):
    """An external inference service (admins): where tasks go and the shared secret
    that signs both directions. The secret is stored sealed and never shown again."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN})
    base_url: str = Field(
        min_length=8,
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s?#]*$",
        description="http(s) URL; tasks are POSTed to <base_url>/tasks.",
    )
    secret: str = Field(min_length=16, max_length=512, description="Shared HMAC secret.")
    description: str | None = Field(default=None, max_length=2000)
    mpp: float | None = Field(default=None, gt=0, le=100, description="Input resolution.")
    output: ServiceOutput
    params_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the params the service takes."
    )

    _name = field_validator("name")(_printable_name)


class ServicePublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    base_url: str
    mpp: float | None
    output: ModelOutputPublic
    params_schema: dict[str, Any] | None
    created_at: datetime


class InferenceCreate(BaseModel):
    """Start a task: a model over a slide's tissue (or over `region`)."""

    model_config = ConfigDict(extra="forbid")

    slide_id: uuid.UUID
    model: str = Field(
        default="nuclei-he",
        min_length=1,
        max_length=200,
        description="A model's id or name, as GET /inference/models lists them.",
    )
    params: dict[str, Any] | None = Field(
        default=None, description="The model's parameters (its params_schema)."
    )
    confidence_threshold: float = Field(default=0.5, ge=0, le=1)
    region: Region | None = Field(default=None, description="Level-0 pixels.")
    slide_mpp: float | None = Field(
        default=None, gt=0, le=100, description="µm per level-0 pixel when the slide does not say."
    )
    device: Device = "cpu"


class TaskModel(BaseModel):
    kind: ModelKind
    name: str
    id: uuid.UUID | None = None


class TaskArtefacts(BaseModel):
    parquet_file_id: uuid.UUID
    geojson_file_id: uuid.UUID
    summary_file_id: uuid.UUID
    tissue_file_id: uuid.UUID | None = None


class TaskPublic(BaseModel):
    task_id: uuid.UUID
    status: Status = Field(description="As the task's job has it (see /jobs).")
    progress: float
    message: str | None
    error: JobError | None
    slide_id: uuid.UUID
    model: TaskModel
    function: str = Field(description="The job's capability.")
    objects: int | None = None
    summary: dict[str, Any] | None = None
    artefacts: TaskArtefacts | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CallbackBody(BaseModel):
    """What an external service reports (`POST /inference/webhook/callback`)."""

    model_config = ConfigDict(extra="ignore")

    task_id: uuid.UUID
    event_id: str = Field(min_length=1, max_length=128)
    status: Literal["started", "progress", "succeeded", "failed"]
    progress: float | None = Field(default=None, ge=0, le=1)
    message: str | None = Field(default=None, max_length=4000)
    predictions: dict[str, Any] | None = None
    predictions_url: str | None = Field(default=None, max_length=4096, pattern=r"^https?://[^\s]+$")


class CallbackAccepted(BaseModel):
    task_id: uuid.UUID
    event_id: str
    duplicate: bool = Field(description="True when the event was seen before (nothing changed).")
