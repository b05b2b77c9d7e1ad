"""What `GET /inference/models` lists: each model's kind, parameters (JSON Schema with
defaults), input resolution, tile geometry, output kind and classes, from the same
declarations the engine runs with."""

from __future__ import annotations

from typing import Any

from functions.inference.models import ModelIO
from functions.inference.nuclei_he import NucleiHEParams, declaration
from functions.inference.onnx_model import declaration as onnx_declaration
from functions.inference.params import OnnxModelSpec


def _describe(io: ModelIO) -> dict[str, Any]:
    return {
        "mpp": io.mpp,
        "tile": io.tile,
        "overlap": io.overlap,
        "output": {"kind": io.kind, "classes": list(io.classes)},
        "measurements": ["centroid_x", "centroid_y", *io.measurements],
    }


def builtin_models() -> list[dict[str, Any]]:
    """The builtin models (no weights): name, kind, parameter schema, declaration."""
    return [
        {
            "name": "nuclei-he",
            "kind": "builtin",
            "description": "Nuclei on H&E: HistomicsTK's recipe (Reinhard, colour "
            "deconvolution, threshold, multi-scale DoG seeds, watershed).",
            "params_schema": NucleiHEParams.model_json_schema(),
            **_describe(declaration()),
        }
    ]


def describe_onnx(spec: OnnxModelSpec) -> dict[str, Any]:
    """A registered ONNX model as `GET /inference/models` shows it."""
    return {
        "name": spec.name,
        "kind": "onnx",
        "file_id": str(spec.file_id),
        "input": spec.input.model_dump(mode="json"),
        "params_schema": None,
        **_describe(onnx_declaration(spec)),
    }
