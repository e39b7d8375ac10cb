"""The compiled scoring path as an ONNX graph: preprocessing arithmetic + a model, one file per model.

The graph takes the raw codes the compiled preprocessor's first stage makes (``raw``: float64, one column per
raw code, NaN = missing, log already applied; that stage is where values are *checked*, so it stays in Python)
and computes everything after it: gather the output columns, one-hot the categorical codes, fill, centre and
scale (float64, as the reference), then float32 for the nets, and the task's head. Its one output
``outputs`` (float64, patients x outputs) holds the prediction table's columns in ``output_names`` order.

Written with ``onnx.helper`` from the same arrays the numpy path runs (``CompiledPreprocessor``,
``NetProgram``, the linear coefficients), rather than traced from torch: the nets are a few matrix products
whose weights we already hold, the preprocessing is not a torch module at all, and one graph per model with
its preprocessing needs no graph merging. LightGBM models have no graph here (their fastest path is
LightGBM's own C predictor) and neither have recalibrated models; ``model_graph`` returns None for them.

``check_graph`` is run before onnxruntime sees a file from a bundle: only the operators this module writes,
the default domain, and no tensor whose data lives outside the file (an ONNX file can point at external paths).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from precimed.compiled.models import CompiledModel
from precimed.compiled.nets import Activation, Linear, Residual, Step
from precimed.compiled.preprocessing import CompiledPreprocessor

if TYPE_CHECKING:
    from precimed.compiled.scorer import Scorer

__all__ = ["ALLOWED_OPS", "OPSET", "check_graph", "model_graph", "onnx_graphs"]

OPSET = 17
ALLOWED_OPS = frozenset({
    "Gather", "Equal", "Cast", "IsNaN", "Not", "And", "Where", "Sub", "Div", "Mul", "Add", "MatMul", "Relu",
    "Tanh", "Erf", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Softmax", "ReduceMean", "Exp", "Neg", "Unsqueeze",
    "Squeeze", "Concat", "Reshape", "Identity",
})


class _Graph:
    """A tiny builder: constants become initializers, each node gets a fresh output name."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        name = self._name(stem)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, *inputs: str, output: str | None = None, **attrs) -> str:
        out = output or self._name(kind.lower())
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attrs))
        return out


def _encode(g: _Graph, pre: CompiledPreprocessor, raw: str) -> str:
    """Raw codes (double) -> the encoded float32 matrix, as ``CompiledPreprocessor.encode``."""
    wide = g.op("Gather", raw, g.const(pre.source, "source"), axis=1)
    hot = pre.one_hot >= 0
    if hot.any():
        equal = g.op("Cast", g.op("Equal", wide, g.const(np.where(hot, pre.one_hot, -1).astype(np.float64))),
                     to=11)  # DOUBLE
        known = g.op("And", g.const(hot), g.op("Not", g.op("IsNaN", wide)))
        wide = g.op("Where", known, equal, wide)
    if pre.indicators:
        flags = np.zeros(pre.n_out, dtype=bool)
        origin = np.zeros(pre.n_out, dtype=np.int64)
        for j, cols in pre.indicators:  # a genotype's counts are missing together: its first column tells
            flags[j], origin[j] = True, cols[0]
        missing = g.op("Cast", g.op("IsNaN", g.op("Gather", raw, g.const(origin, "origin"), axis=1)), to=11)
        wide = g.op("Where", g.const(flags), missing, wide)
    filled = g.op("Where", g.op("IsNaN", wide), g.const(pre.fill, "fill"), wide)
    scaled = g.op("Div", g.op("Sub", filled, g.const(pre.center, "center")), g.const(pre.scale, "scale"))
    return g.op("Cast", scaled, to=1)  # FLOAT


def _linear(g: _Graph, step: Linear, h: str) -> str:
    out = g.op("MatMul", h, g.const(step.weight, "w"))
    return out if step.bias is None else g.op("Add", out, g.const(step.bias, "b"))


def _activation(g: _Graph, step: Activation, h: str) -> str:
    if step.name == "relu":
        return g.op("Relu", h)
    if step.name == "tanh":
        return g.op("Tanh", h)
    if step.name == "elu":
        return g.op("Elu", h, alpha=step.slope)
    if step.name == "selu":
        return g.op("Selu", h)
    if step.name == "leaky_relu":
        return g.op("LeakyRelu", h, alpha=step.slope)
    # exact GELU: x * 0.5 * (1 + erf(x / sqrt 2))
    erf = g.op("Erf", g.op("Mul", h, g.const(np.float32(1 / np.sqrt(2)))))
    return g.op("Mul", g.op("Mul", h, g.const(np.float32(0.5))), g.op("Add", erf, g.const(np.float32(1))))


def _steps(g: _Graph, steps: tuple[Step, ...], h: str) -> str:
    for step in steps:
        if isinstance(step, Linear):
            h = _linear(g, step, h)
        elif isinstance(step, Activation):
            h = _activation(g, step, h)
        elif isinstance(step, Residual):
            skip = h if step.skip is None else _linear(g, step.skip, h)
            h = g.op("Add", skip, _steps(g, step.body, h))
        else:
            h = g.op("Add", _linear(g, step.wide, h), _steps(g, step.deep, h))
    return h


def _first(g: _Graph, members: str) -> str:
    """out[..., 0] of the (members, n, outputs) tensor: (members, n)."""
    first = g.op("Gather", members, g.const(np.array([0], dtype=np.int64)), axis=2)
    return g.op("Squeeze", first, g.const(np.array([2], dtype=np.int64)))


def _mean(g: _Graph, x: str) -> str:
    return g.op("ReduceMean", x, axes=[0], keepdims=0)


def _column(g: _Graph, x: str) -> str:
    """(n,) -> (n, 1) double."""
    return g.op("Cast", g.op("Unsqueeze", x, g.const(np.array([1], dtype=np.int64))), to=11)


def _head(g: _Graph, model: CompiledModel, x: str) -> str:
    """The task's outputs (n, k) double from the encoded float32 matrix ``x``."""
    task = model.task
    if model.kind == "nets":
        members = _steps(g, model.program.steps, x)
        if task == "binary":
            return _column(g, _mean(g, g.op("Sigmoid", _first(g, members))))
        if task == "multiclass":
            return g.op("Cast", _mean(g, g.op("Softmax", members, axis=-1)), to=11)
        risk = _mean(g, _first(g, members))
        if task == "regression":
            scaled = g.op("Add", g.op("Mul", risk, g.const(np.float32(model.y_scale))),
                          g.const(np.float32(model.y_mean)))
            return _column(g, scaled)
        risk = _column(g, risk)
    else:
        coef = np.asarray(model.coef, dtype=np.float64)
        scores = g.op("MatMul", g.op("Cast", x, to=11), g.const(coef.T if coef.ndim == 2 else coef[:, None]))
        if model.intercept is not None:
            scores = g.op("Add", scores, g.const(np.atleast_1d(np.asarray(model.intercept, dtype=np.float64))))
        if task == "binary":
            return g.op("Sigmoid", scores)
        if task == "multiclass":
            return g.op("Softmax", scores, axis=-1)
        if task == "regression":
            return scores
        risk = scores
    surv = g.op("Exp", g.op("Neg", g.op("Mul", g.op("Exp", risk), g.const(model.h0[None, :].astype(np.float64)))))
    event = g.op("Sub", g.const(np.float64(1.0)), surv)
    return g.op("Concat", risk, event, axis=1)


def model_graph(pre: CompiledPreprocessor, model: CompiledModel, *, name: str) -> bytes | None:
    """The serialized ONNX model of preprocessing + ``model`` (None for a model without a graph: LightGBM)."""
    if model.kind in ("gbm", "recalibrated"):
        return None
    from onnx import TensorProto, checker, helper

    g = _Graph()
    x = _encode(g, pre, "raw")
    g.op("Identity", _head(g, model, x), output="outputs")
    graph = helper.make_graph(
        g.nodes, f"precimed_{name}",
        [helper.make_tensor_value_info("raw", TensorProto.DOUBLE, ["n", pre.n_raw])],
        [helper.make_tensor_value_info("outputs", TensorProto.DOUBLE, ["n", None])],
        g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="precimed", doc_string=f"precimed model {name}: raw codes -> outputs")
    proto.ir_version = 8
    checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def onnx_graphs(scorer: Scorer) -> dict[str, bytes]:
    """The ONNX file of every model of a compiled scorer that has a graph (LightGBM has none)."""
    graphs = {name: model_graph(scorer.preprocessor, model, name=name) for name, model in scorer.models.items()}
    return {name: data for name, data in graphs.items() if data is not None}


def check_graph(data: bytes) -> str | None:
    """Why an ONNX file from a bundle must not be run (None when it may): unknown operators or domains, external
    tensor data, or not the input/output this module writes."""
    try:
        from onnx import ModelProto, TensorProto
    except ImportError:
        return "the onnx package is not installed"
    proto = ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError types
        return "not an ONNX file"
    graph = proto.graph
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ALLOWED_OPS:
            return f"operator {node.domain or 'ai.onnx'}.{node.op_type[:40]} is not one precimed writes"
        if any(a.g.node or a.graphs for a in node.attribute):
            return "a node holds a sub-graph"
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            return "a tensor's data lives outside the file"
    if [i.name for i in graph.input] != ["raw"] or [o.name for o in graph.output] != ["outputs"]:
        return "its inputs and outputs are not precimed's (raw -> outputs)"
    if any(f.domain not in ("", "ai.onnx") for f in proto.opset_import) or proto.functions:
        return "it imports operator sets or functions precimed does not write"
    return None
