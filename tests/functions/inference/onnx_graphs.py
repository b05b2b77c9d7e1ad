"""ONNX graphs built in-process with the onnx helper API (no weights to download):
fixed convolutions that threshold the hematoxylin-dominated red channel, and heads
that turn that map into segmentation, detection or classification outputs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 256
#: Red below this is nuclear (hematoxylin absorbs red, eosin hardly does).
RED_THRESHOLD = 175.0


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _nuclear_probability(nodes: list[onnx.NodeProto]) -> str:
    """Nodes from input "image" (N, 3, S, S), raw 0-255 RGB, to "p" (N, 1, S, S)."""
    weight = np.zeros((1, 3, 1, 1), np.float32)
    weight[0, 0] = -0.25
    nodes += [
        _const("w_red", weight),
        _const("b_red", np.array([0.25 * RED_THRESHOLD], np.float32)),
        helper.make_node("Conv", ["image", "w_red", "b_red"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
    ]
    return "p"


def _model(nodes: list[onnx.NodeProto], output: onnx.ValueInfoProto, size: int = SIZE) -> bytes:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])
    graph = helper.make_graph(nodes, "aperture-test", [image], [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def segmentation_model(size: int = SIZE) -> bytes:
    """(N, 1, S, S) probability of "nucleus"."""
    nodes: list[onnx.NodeProto] = []
    p = _nuclear_probability(nodes)
    nodes.append(helper.make_node("Identity", [p], ["nucleus"]))
    out = helper.make_tensor_value_info("nucleus", TensorProto.FLOAT, ["N", 1, size, size])
    return _model(nodes, out, size)


def _gaussian(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1)
    g = np.exp(-(x**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.max()).astype(np.float32).reshape(1, 1, 2 * radius + 1, 2 * radius + 1)


def detection_model(k: int = 256, half: float = 8.0) -> bytes:
    """(N, K, 5): CenterNet-style peaks of the blurred nuclear map as 16 px boxes.

    heat = p * a unit-sum Gaussian (a nucleus' centre scores near 1); peaks = heat
    where it equals its 3 x 3 max; top K peaks -> (x0, y0, x1, y1, score).
    """
    nodes: list[onnx.NodeProto] = []
    p = _nuclear_probability(nodes)
    kernel = _gaussian(3.0, 7)
    kernel /= kernel.sum()
    nodes += [
        _const("w_blur", kernel),
        helper.make_node("Conv", [p, "w_blur"], ["heat"], pads=[7, 7, 7, 7]),
        helper.make_node("MaxPool", ["heat"], ["pooled"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Equal", ["heat", "pooled"], ["is_peak"]),
        helper.make_node("Cast", ["is_peak"], ["peak_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["heat", "peak_f"], ["peaks"]),
        _const("flat_shape", np.array([0, -1], np.int64)),
        helper.make_node("Reshape", ["peaks", "flat_shape"], ["flat"]),
        _const("k", np.array([k], np.int64)),
        helper.make_node("TopK", ["flat", "k"], ["score", "index"], axis=1),
        _const("width", np.array(SIZE, np.int64)),
        helper.make_node("Mod", ["index", "width"], ["ix"]),
        helper.make_node("Div", ["index", "width"], ["iy"]),
        helper.make_node("Cast", ["ix"], ["fx"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["iy"], ["fy"], to=TensorProto.FLOAT),
        _const("half", np.array(half, np.float32)),
        _const("centre", np.array(0.5, np.float32)),
        helper.make_node("Add", ["fx", "centre"], ["cx"]),
        helper.make_node("Add", ["fy", "centre"], ["cy"]),
        helper.make_node("Sub", ["cx", "half"], ["x0"]),
        helper.make_node("Sub", ["cy", "half"], ["y0"]),
        helper.make_node("Add", ["cx", "half"], ["x1"]),
        helper.make_node("Add", ["cy", "half"], ["y1"]),
        _const("last", np.array([2], np.int64)),
    ]
    for name in ("x0", "y0", "x1", "y1", "score"):
        nodes.append(helper.make_node("Unsqueeze", [name, "last"], [f"{name}_"]))
    nodes.append(
        helper.make_node("Concat", ["x0_", "y0_", "x1_", "y1_", "score_"], ["boxes"], axis=2)
    )
    out = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", k, 5])
    return _model(nodes, out)


def classification_model() -> bytes:
    """(N, 2): the nuclear fraction f of the tile as ["dense", "sparse"] = [g, 1 - g],
    g = clip(4 f, 0, 1)."""
    nodes: list[onnx.NodeProto] = []
    p = _nuclear_probability(nodes)
    nodes += [
        helper.make_node("GlobalAveragePool", [p], ["mean"]),
        _const("shape", np.array([0, 1], np.int64)),
        helper.make_node("Reshape", ["mean", "shape"], ["f"]),
        _const("four", np.array(4.0, np.float32)),
        _const("zero", np.array(0.0, np.float32)),
        _const("one", np.array(1.0, np.float32)),
        helper.make_node("Mul", ["f", "four"], ["g_raw"]),
        helper.make_node("Clip", ["g_raw", "zero", "one"], ["g"]),
        helper.make_node("Sub", ["one", "g"], ["rest"]),
        helper.make_node("Concat", ["g", "rest"], ["probs"], axis=1),
    ]
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])
    return _model(nodes, out)
