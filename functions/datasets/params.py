"""The contract of `datasets.build` and its per-source child `datasets.build.part`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from common.text import Label

#: Patch sides (px) and resolutions (µm per pixel) a build accepts.
MIN_PATCH, MAX_PATCH = 16, 2048
MIN_MPP, MAX_MPP = 0.1, 64.0


class PatchSpec(BaseModel):
    """Patches of whole slides, at a resolution, on tissue."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=256, ge=MIN_PATCH, le=MAX_PATCH, description="Patch side in pixels.")
    mpp: float = Field(default=0.5, ge=MIN_MPP, le=MAX_MPP, description="µm per patch pixel.")
    stride: int | None = Field(
        default=None,
        ge=1,
        le=4 * MAX_PATCH,
        description="Grid step in patch pixels (default: size).",
    )
    sample: int | None = Field(
        default=None, ge=1, le=1_000_000, description="A random sample of N grid patches per slide."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the random sample.")
    min_tissue: float = Field(
        default=0.5, ge=0, le=1, description="Least tissue fraction of a patch."
    )
    region: list[tuple[float, float]] | None = Field(
        default=None, min_length=3, description="A polygon (level-0 px) patches must lie in."
    )
    labels_from: list[uuid.UUID] = Field(
        default_factory=list,
        description="`inference.slide` tasks, one per slide: per-patch class counts and "
        "object centroids from their predictions.",
    )
    labels_file_id: uuid.UUID | None = Field(
        default=None, description="A GeoJSON file of polygons: each patch gets the ones it touches."
    )


class CropSpec(BaseModel):
    """Single-cell crops of time-lapses, from a workflow's label stack and traces."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=64, ge=8, le=1024, description="Crop side in pixels.")
    channels: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=16)
    mask: bool = Field(default=False, description="Add the cell's mask as a channel (`mask.png`).")
    workflows: list[uuid.UUID] = Field(
        default_factory=list,
        description="`workflow` jobs to take cells from (default: the newest finished "
        "workflow of each time-lapse).",
    )
    good_only: bool = Field(default=True, description="Only cells the workflow kept (`good`).")
    every: int = Field(default=1, ge=1, description="Every n-th frame of each cell.")


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        if abs(self.train + self.validation + self.test - 1) > 1e-6:
            raise ValueError("split ratios must sum to 1")
        return self


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["png", "jpeg"] = "png"
    quality: int = Field(default=90, ge=1, le=100, description="JPEG quality.")
    shard_size: int = Field(default=1000, ge=1, le=1_000_000, description="Samples per shard.")
    shard_bytes: int | None = Field(
        default=None, ge=1 << 16, description="Bytes per shard at most (besides shard_size)."
    )


class Source(BaseModel):
    """One source file as planned: what it is, its split and what labels it."""

    file_id: uuid.UUID
    name: str
    kind: Literal["slide", "timelapse"]
    split: Literal["train", "validation", "test"]
    objects_file_id: uuid.UUID | None = None  # the labels_from task's Parquet
    fovs: list[dict[str, Any]] = Field(default_factory=list)  # fov, traces, labels ids
    workflow_id: uuid.UUID | None = None
    mpp: float | None = None  # µm per pixel of a slide (checked at plan)


#: A dataset's name, as the datasets API takes it. The constraints sit on the str itself:
#: on the union with SkipJsonSchema[None] pydantic would apply them to None too.
DatasetName = Annotated[Label, Field(min_length=1, max_length=200)]


class BuildSpec(BaseModel):
    """What to build (the body of POST /datasets/{id}/builds)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [{"required": ["patches"]}, {"required": ["crops"]}],
            "not": {"required": ["target_dataset_id", "new_dataset_name"]},
        },
    )

    source_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=10_000,
        description="Explicit source files (default: the dataset's).",
    )
    # Optional but never null (SkipJsonSchema): the schema's "patches or crops" and "not
    # both targets" below then say exactly what the validator checks.
    patches: PatchSpec | SkipJsonSchema[None] = None
    crops: CropSpec | SkipJsonSchema[None] = None
    output: OutputSpec = OutputSpec()
    split: SplitSpec = SplitSpec()
    target_dataset_id: uuid.UUID | SkipJsonSchema[None] = Field(
        default=None, description="Where the shards go (default: the source dataset)."
    )
    new_dataset_name: DatasetName | SkipJsonSchema[None] = Field(
        default=None,
        description="Put the shards in a new dataset of this name, made when the build "
        "succeeds (instead of `target_dataset_id`).",
    )
    name: str = Field(default="build", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _something_to_build(self) -> BuildSpec:
        if self.patches is None and self.crops is None:
            raise ValueError("give `patches` (slides) or `crops` (time-lapses), or both")
        if self.new_dataset_name is not None and self.target_dataset_id is not None:
            raise ValueError("give `target_dataset_id` or `new_dataset_name`, not both")
        return self


class BuildParams(BuildSpec):
    dataset_id: uuid.UUID = Field(description="The dataset whose files are the sources.")
    planned: list[Source] | None = Field(
        default=None, description="Filled at submit: the sources as checked (leave it out)."
    )


class PartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Source
    index: int = Field(ge=0, description="The source's place in the build (sample keys).")
    patches: PatchSpec | None = None
    crops: CropSpec | None = None
    output: OutputSpec = OutputSpec()


class PartResult(BaseModel):
    file_id: uuid.UUID
    samples: int
    tar_file_id: uuid.UUID | None = None
    seconds: float


class BuildResult(BaseModel):
    dataset_id: uuid.UUID
    samples: int
    summary: dict[str, Any]
    shard_file_ids: list[uuid.UUID]
    manifest_csv_file_id: uuid.UUID | None
    manifest_parquet_file_id: uuid.UUID | None
    summary_file_id: uuid.UUID | None
    failed_sources: list[dict[str, Any]] = Field(default_factory=list)
