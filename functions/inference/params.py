"""The inference contract: model specs (builtin or ONNX, a discriminated union), the
parameters of `inference.slide` and `inference.region`, and their results. Validated
once, at the API edge or when a child job is spawned."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.inference.nuclei_he import NucleiHEParams


class BuiltinModelSpec(BaseModel):
    """A model that ships with Aperture (no weights to download)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin"] = "builtin"
    name: Literal["nuclei-he"] = "nuclei-he"
    params: NucleiHEParams = Field(default_factory=NucleiHEParams)


#: A channel's divisor: the schema says it is positive, so a client learns it before sending.
PositiveStd = Annotated[float, Field(gt=0)]


class OnnxInput(BaseModel):
    """How tiles are fed to an ONNX graph."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=16, le=4096, description="Tile side in pixels (square tiles).")
    mpp: float = Field(gt=0, le=100, description="Resolution the model was trained at (µm/px).")
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[PositiveStd, PositiveStd, PositiveStd] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    overlap: int | None = Field(
        default=None,
        ge=0,
        description="Pixels shared by neighbouring tiles; default size // 4 "
        "(0 for classification).",
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="Tiles per run of the graph.")


class OnnxOutput(BaseModel):
    """What an ONNX graph's first output means.

    segmentation: (N, C, H, W) per-class probabilities (NHWC graphs: (N, H, W, C)),
    C = len(classes); detection: (N, K, 4 + C) boxes x0, y0, x1, y1 in tile pixels
    then per-class scores; classification: (N, C) class probabilities.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["segmentation", "detection", "classification"]
    classes: list[str] = Field(min_length=1, max_length=64)
    threshold: float = Field(default=0.5, ge=0, le=1, description="Probability/score cut-off.")
    split: Literal["components", "watershed"] = Field(
        default="components",
        description="Segmentation instances: connected components, or a "
        "watershed of the distance transform that splits touching objects.",
    )
    min_area: int = Field(default=16, ge=1, description="Smallest segmentation instance (px).")


class OnnxModelSpec(BaseModel):
    """A user's ONNX model: the stored `.onnx` file and its declaration."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["onnx"] = "onnx"
    file_id: uuid.UUID
    name: str = Field(default="onnx", min_length=1, max_length=200)
    input: OnnxInput
    output: OnnxOutput

    @model_validator(mode="after")
    def _overlap_fits(self) -> OnnxModelSpec:
        overlap = self.input.overlap
        if overlap is not None and overlap >= self.input.size:
            raise ValueError(f"overlap {overlap} must be smaller than size {self.input.size}")
        return self


ModelSpec = Annotated[BuiltinModelSpec | OnnxModelSpec, Field(discriminator="kind")]


class BBox(BaseModel):
    """A box in level-0 pixels."""

    model_config = ConfigDict(extra="forbid")

    x0: float
    y0: float
    x1: float
    y1: float

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in values) or self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"bbox needs finite x0 < x1 and y0 < y1, got {values}")
        return self


class Region(BaseModel):
    """A user region in level-0 pixels: a polygon, or a box."""

    model_config = ConfigDict(extra="forbid")

    polygon: list[tuple[float, float]] | None = Field(default=None, min_length=3)
    bbox: BBox | None = None

    @model_validator(mode="after")
    def _one(self) -> Region:
        if (self.polygon is None) == (self.bbox is None):
            raise ValueError("give exactly one of polygon and bbox")
        if self.polygon is not None and not all(math.isfinite(v) for p in self.polygon for v in p):
            raise ValueError("polygon coordinates must be finite")
        return self

    def points(self) -> list[tuple[float, float]]:
        if self.polygon is not None:
            return list(self.polygon)
        b = self.bbox
        assert b is not None  # guaranteed by the validator
        return [(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)]


Device = Literal["auto", "cpu", "gpu"]


class InferenceParams(BaseModel):
    """`inference.slide`: a model over a stored slide's tissue."""

    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored slide file.")
    model: ModelSpec = Field(default_factory=BuiltinModelSpec)
    confidence_threshold: float = Field(default=0.5, ge=0, le=1)
    region: Region | None = Field(default=None, description="Only tissue inside it (level-0 px).")
    slide_mpp: float | None = Field(
        default=None, gt=0, le=100, description="µm per level-0 pixel when the slide does not say."
    )
    tiles_per_region: int = Field(
        default=64, ge=1, le=10_000, description="Tiles per child job; one region runs in this job."
    )
    device: Device = Field(default="cpu", description='"gpu" runs regions on GPU workers.')


class RegionParams(BaseModel):
    """`inference.region` (a child of `inference.slide`): one region's tiles."""

    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    model: ModelSpec
    confidence_threshold: float = Field(default=0.5, ge=0, le=1)
    slide_mpp: float = Field(gt=0)
    region_index: int = Field(ge=0)
    tiles: list[tuple[int, int]] = Field(min_length=1, description="[col, row] of each tile.")
    tissue_file_id: uuid.UUID = Field(description="The parent's tissue mask (npz).")
    stain_stats: tuple[tuple[float, float, float], tuple[float, float, float]] | None = Field(
        default=None, description="The slide's l-alpha-beta mean and std (builtin nuclei-he)."
    )
    device: Device = "cpu"


class RegionResult(BaseModel):
    region_index: int
    tiles: int
    objects: int
    objects_file_id: uuid.UUID
    seconds: float


class InferenceResult(BaseModel):
    summary: dict[str, Any]
    geojson_file_id: uuid.UUID
    parquet_file_id: uuid.UUID
    summary_file_id: uuid.UUID
    tissue_file_id: uuid.UUID | None = Field(
        default=None, description="The tissue mask (none for external services' tasks)."
    )
    objects: int
