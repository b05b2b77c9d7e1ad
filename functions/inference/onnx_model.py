"""User ONNX models: checking a graph against its declaration (what registration does,
refusing with InvalidInput naming the mismatch) and running it over tiles in batches
with onnxruntime (CPU; the CUDA execution provider on GPU workers)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.errors import InvalidInput
from functions.inference.measure import KeepFn
from functions.inference.models import ModelIO
from functions.inference.objects import Objects
from functions.inference.onnx_decode import (
    classification_objects,
    detection_objects,
    measurement_names,
    segmentation_objects,
)
from functions.inference.params import OnnxModelSpec

_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)"}


def open_session(source: str | Path | bytes, *, device: Literal["cpu", "gpu"] = "cpu") -> Any:
    """An onnxruntime session; a file that is not a loadable model is InvalidInput."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
        preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
        if preload is not None:
            with contextlib.suppress(Exception):  # else ORT falls back to the CPU provider
                preload()  # CUDA and cuDNN from the nvidia wheels (the GPU image's)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        source_arg = source if isinstance(source, bytes) else str(source)
        return ort.InferenceSession(source_arg, sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own types for every bad file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInput(f"not a valid ONNX model: {first[:300]}") from None


def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _expect(what: str, shape: list[int | None], axis: int, want: int, meaning: str) -> None:
    got = shape[axis]
    if got is not None and got != want:
        raise InvalidInput(
            f"{what} has shape {_show(shape)}: dimension {axis} ({meaning}) is {got}, "
            f"the declaration says {want}"
        )


def _show(shape: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_model(session: Any, spec: OnnxModelSpec) -> None:
    """The graph's input and first output agree with `spec`; else InvalidInput."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise InvalidInput(f"the graph has {len(inputs)} inputs; one image input is expected")
    if not outputs:
        raise InvalidInput("the graph has no outputs")
    tensor, decl = inputs[0], spec.input
    what = f"input {tensor.name!r}"
    if tensor.type != _ORT_TYPES[decl.dtype]:
        raise InvalidInput(f"{what} is {tensor.type}, the declaration says {decl.dtype}")
    shape = _dims(tensor.shape)
    if len(shape) != 4:
        raise InvalidInput(
            f"{what} has shape {_show(shape)}: 4 dimensions expected ({decl.layout})"
        )
    channel, spatial = (1, (2, 3)) if decl.layout == "NCHW" else (3, (1, 2))
    _expect(what, shape, channel, 3, "channels")
    for axis in spatial:
        _expect(what, shape, axis, decl.size, "tile size")
    _check_output(outputs[0], spec)


def _check_output(tensor: Any, spec: OnnxModelSpec) -> None:
    out, what = spec.output, f"output {tensor.name!r}"
    shape, n = _dims(tensor.shape), len(spec.output.classes)
    if out.kind == "segmentation":
        if len(shape) != 4:
            raise InvalidInput(f"{what} has shape {_show(shape)}: segmentation needs 4 dimensions")
        _expect(what, shape, 1 if spec.input.layout == "NCHW" else 3, n, "classes")
    elif out.kind == "detection":
        if len(shape) != 3:
            raise InvalidInput(
                f"{what} has shape {_show(shape)}: detection needs (N, K, 4 + classes)"
            )
        _expect(what, shape, 2, 4 + n, "4 box coordinates + class scores")
    else:
        if len(shape) != 2:
            raise InvalidInput(
                f"{what} has shape {_show(shape)}: classification needs (N, classes)"
            )
        _expect(what, shape, 1, n, "classes")


def validate_onnx(source: str | Path | bytes, spec: OnnxModelSpec) -> None:
    """Registration's check: `source` is an ONNX model whose graph matches `spec`.

    Raises
    ------
    InvalidInput
        Not a model onnxruntime can load, or a shape/type that differs from the
        declaration (the message names the tensor, the dimension and both values).
    """
    check_model(open_session(source), spec)


def declaration(spec: OnnxModelSpec, batch: int | None = None) -> ModelIO:
    decl = spec.input
    default = 0 if spec.output.kind == "classification" else decl.size // 4
    return ModelIO(
        name=spec.name,
        kind=spec.output.kind,
        mpp=decl.mpp,
        tile=decl.size,
        overlap=default if decl.overlap is None else decl.overlap,
        classes=tuple(spec.output.classes),
        measurements=tuple(measurement_names(spec.output)),
        batch=batch or decl.batch_size,
    )


class OnnxModel:
    """A checked ONNX graph as a `TileModel`."""

    def __init__(self, session: Any, spec: OnnxModelSpec) -> None:
        check_model(session, spec)
        self.session, self.spec = session, spec
        fixed = _dims(session.get_inputs()[0].shape)[0]
        self.io = declaration(spec, batch=fixed)
        self.input_name = session.get_inputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxModel({self.spec.name!r}, {self.io.kind})"

    def _prepare(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        decl = self.spec.input
        batch = np.stack(tiles)
        if decl.channel_order == "BGR":
            batch = batch[..., ::-1]
        if decl.dtype == "uint8":
            data = np.ascontiguousarray(batch)
        else:
            mean, std = np.asarray(decl.mean, np.float32), np.asarray(decl.std, np.float32)
            data = ((batch.astype(np.float32) - mean) / std).astype(decl.dtype)
        if decl.layout == "NCHW":
            data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))
        return data

    def predict(self, tiles: Sequence[np.ndarray], keep: Sequence[KeepFn]) -> list[Objects]:
        raw = self.session.run(None, {self.input_name: self._prepare(tiles)})[0]
        out, decl = self.spec.output, self.spec.input
        results = []
        for i, k in enumerate(keep):
            if out.kind == "segmentation":
                probs = raw[i] if decl.layout == "NCHW" else np.moveaxis(raw[i], -1, 0)
                probs = np.asarray(probs, np.float32)
                results.append(segmentation_objects(probs, k, out, tile=decl.size, mpp=decl.mpp))
            elif out.kind == "detection":
                results.append(detection_objects(raw[i], k, out, tile=decl.size, mpp=decl.mpp))
            else:
                square = (0.0, 0.0, float(decl.size), float(decl.size))
                results.append(classification_objects(raw[i], square, out, mpp=decl.mpp))
        return results
