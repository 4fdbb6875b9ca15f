"""A trained model out of the service: the engine's own .npz, or an ONNX graph built with the ``onnx`` package.

The ONNX graph takes ``input`` (float32, shape [N, input_dim], raw features as predict takes them: NaN for a
missing value, a categorical column as its category code) and computes the stored preprocessing (numeric
imputation, clip and scaling with missing indicators, boolean fill, one-hot slots of categorical columns; see
``_preprocessing``), each dense layer as a Gemm, each activation as its ONNX operator (dropout is the identity
at inference), and then:

- classification: ``probabilities`` (float32 [N, n_classes]; a 1-unit sigmoid output becomes [1 - p, p]) and
  ``label`` ([N], the class labels as uploaded: ArgMax, then Gather from a constant of the labels, as string,
  int64, double or bool tensor);
- regression: ``predictions`` (float32 [N, n_outputs]).

The model's id, task and classes are in the graph's metadata_props. ``onnx`` is an optional dependency
(the ``onnx`` extra); without it, ``format=onnx`` answers 501 naming the extra.
"""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy.orm import Session

import core
from service.errors import InvalidInput, NotAvailable, NotFound
from service.models import service
from service.storage import Storage

FORMATS = ("onnx", "npz")
OPSET = 17
IR_VERSION = 8          # readable by onnxruntime >= 1.14
MEDIA_TYPES = {"onnx": "application/octet-stream", "npz": "application/octet-stream"}


def read_npz(session: Session, storage: Storage, *, owner: str, model_id: str) -> bytes:
    """The model's stored weights file (a core ``Network.save`` .npz), as bytes."""
    row = service.get_or_raise(session, owner=owner, model_id=model_id)
    if not storage.exists(row.artifact_key):
        raise NotFound(f"model {model_id} has no stored weights ({row.artifact_key} is missing)")
    with storage.open_read(row.artifact_key) as fh:
        return fh.read()


def export(session: Session, storage: Storage, *, owner: str, model_id: str, fmt: str) -> bytes:
    """The model as ``fmt`` (onnx or npz) bytes; 422 for another format, 404 for an unknown model."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        _require_onnx()
    data = read_npz(session, storage, owner=owner, model_id=model_id)
    if fmt == "npz":
        return data
    import io
    row = service.get_or_raise(session, owner=owner, model_id=model_id)
    net = core.Network.load(io.BytesIO(data))
    classes = list(row.classes) if row.classes is not None else None
    return to_onnx(net, classes=classes, model_id=model_id).SerializeToString()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise NotAvailable("ONNX export needs the onnx package: install mlp-service[onnx]") from None


# ----------------------------------------------------------------------------- graph building

class _Graph:
    """Nodes and initializers of the graph under construction, with fresh tensor names."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name=name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, output: str | None = None,
           **attrs) -> str:
        out = output or self.name(stem or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _activation(g: _Graph, name: str, x: str) -> str:
    """The ONNX node(s) for one of core's activations (``linear`` adds none)."""
    if name == "linear":
        return x
    if name == "relu":
        return g.op("Relu", [x])
    if name == "leaky_relu":
        from core.activations import LEAKY_SLOPE
        return g.op("LeakyRelu", [x], alpha=float(LEAKY_SLOPE))
    if name == "tanh":
        return g.op("Tanh", [x])
    if name == "sigmoid":
        return g.op("Sigmoid", [x])
    if name == "softmax":
        return g.op("Softmax", [x], axis=-1)
    raise ValueError(f"activation {name!r} has no ONNX mapping")


def _labels_tensor(classes: list) -> tuple[np.ndarray, int]:
    """The class labels as a constant and its ONNX element type: strings, int64, double or bool."""
    from onnx import TensorProto
    if all(isinstance(c, bool) for c in classes):
        return np.array(classes, dtype=np.bool_), TensorProto.BOOL
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.array(classes, dtype=np.int64), TensorProto.INT64
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return np.array(classes, dtype=np.float64), TensorProto.DOUBLE
    return np.array([str(c) for c in classes], dtype=object), TensorProto.STRING


def _preprocessing(g: _Graph, prep: core.Preprocessor, x: str) -> str:
    """The stored preprocessing, in the engine's column order: numeric columns (imputation Where/IsNaN, clip
    Min/Max, Sub, Div), their missing indicators, boolean columns (most-frequent fill), then each categorical
    column's one-hot slots (Equal against the kept codes; NaN is the missing code; an "other" slot for the
    rest when the encoder has one)."""
    from onnx import TensorProto
    f32 = np.float32
    raw = x
    parts = []
    num_idx = prep.num_idx_
    if len(num_idx):
        x = raw if len(num_idx) == prep.n_features_in else \
            g.op("Gather", [raw, g.const("numeric_columns", num_idx.astype(np.int64))], "numeric", axis=1)
        num_raw = x
        if prep.imputer_ is not None:
            fill = g.const("fill", prep.imputer_.fill_.astype(f32)[None, :])
            x = g.op("Where", [g.op("IsNaN", [x], "missing"), fill, x], "imputed")
        sc = prep.scaler_
        if sc.clips:
            x = g.op("Min", [x, g.const("clip_hi", sc.hi_.astype(f32)[None, :])], "clipped_hi")
            x = g.op("Max", [x, g.const("clip_lo", sc.lo_.astype(f32)[None, :])], "clipped")
        x = g.op("Sub", [x, g.const("center", sc.center_.astype(f32))], "centered")
        parts.append(g.op("Div", [x, g.const("scale", sc.scale_.astype(f32))], "scaled"))
        if prep.indicator_.any():
            cols = g.const("indicator_columns", np.flatnonzero(prep.indicator_).astype(np.int64))
            picked = g.op("Gather", [num_raw, cols], "indicator_input", axis=1)
            parts.append(g.op("Cast", [g.op("IsNaN", [picked], "is_missing")], "missing_indicator",
                              to=TensorProto.FLOAT))
    if len(prep.bool_idx_):
        b = g.op("Gather", [raw, g.const("boolean_columns", prep.bool_idx_.astype(np.int64))], "boolean", axis=1)
        fill = g.const("boolean_fill", prep.bool_imputer_.fill_.astype(f32)[None, :])
        parts.append(g.op("Where", [g.op("IsNaN", [b], "boolean_missing"), fill, b], "boolean_filled"))
    for j, enc in zip(prep.cat_idx_, prep.encoders_):
        c = g.op("Gather", [raw, g.const(f"column{j}", np.array([j], dtype=np.int64))], f"categorical{j}", axis=1)
        n_codes = float(enc.n_codes)
        # a literal n_codes is an unseen value (not "missing"); then NaN becomes the missing code n_codes
        c = g.op("Where", [g.op("Equal", [c, g.const("n_codes", np.array(n_codes, f32))]),
                           g.const("unseen", np.array(-1.0, f32)), c], f"codes{j}")
        c = g.op("Where", [g.op("IsNaN", [c]), g.const("missing_code", np.array(n_codes, f32)), c], f"codes{j}")
        slots = []
        if len(enc.kept_):
            kept = g.const(f"kept{j}", enc.kept_.astype(f32)[None, :])
            slots.append(g.op("Cast", [g.op("Equal", [c, kept])], f"onehot{j}", to=TensorProto.FLOAT))
        if enc.has_other_:
            if slots:
                hit = g.op("ReduceMax", [slots[0]], f"matched{j}", axes=[1], keepdims=1)
                slots.append(g.op("Sub", [g.const("one", np.ones((1, 1), f32)), hit], f"other{j}"))
            else:
                zero = g.op("Mul", [c, g.const("zero", np.zeros((1, 1), f32))], f"zero{j}")
                slots.append(g.op("Add", [zero, g.const("one", np.ones((1, 1), f32))], f"other{j}"))
        parts.extend(slots)
    if len(parts) == 1:
        return parts[0]
    return g.op("Concat", parts, "preprocessed", axis=1)


def to_onnx(net: core.Network, *, classes: list | None, model_id: str = ""):
    """An ``onnx.ModelProto`` computing what predict answers for ``net`` (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    from core.layers import ActivationLayer, BatchNorm, Dense, Dropout

    g = _Graph()
    f32 = np.float32
    x = "input"
    if net.preprocessor is not None:
        x = _preprocessing(g, net.preprocessor, x)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            x = g.op("Gemm", [x, g.const(f"W{i}", layer.params["W"].astype(f32)),
                              g.const(f"b{i}", layer.params["b"].astype(f32))], f"dense{i}")
            x = _activation(g, layer.activation_name, x)
        elif isinstance(layer, ActivationLayer):
            x = _activation(g, layer.name, x)
        elif isinstance(layer, Dropout):
            continue                                     # the identity at inference
        elif isinstance(layer, BatchNorm):               # running statistics: x * scale + shift
            scale = layer.params["gamma"] / np.sqrt(layer.state["running_var"] + layer.eps)
            shift = layer.params["beta"] - layer.state["running_mean"] * scale
            x = g.op("Mul", [x, g.const(f"bn_scale{i}", scale.astype(f32)[None, :])], f"bn_scaled{i}")
            x = g.op("Add", [x, g.const(f"bn_shift{i}", shift.astype(f32)[None, :])], f"batch_norm{i}")
        else:
            raise ValueError(f"layer {i} ({type(layer).__name__}) has no ONNX mapping")

    n = "N"
    outputs = []
    if net.task == "classification":
        if net.output_dim == 1:                          # sigmoid unit: P(class 1) -> [1 - p, p]
            q = g.op("Sub", [g.const("one", np.ones((1, 1), f32)), x], "p0")
            proba = g.op("Concat", [q, x], output="probabilities", axis=1)
            k = 2
        else:
            proba = g.op("Identity", [x], output="probabilities")
            k = net.output_dim
        idx = g.op("ArgMax", [proba], "class_index", axis=1, keepdims=0)
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [n, k]))
        if classes is not None:
            labels, ltype = _labels_tensor(classes)
            if labels.dtype == object:
                const = helper.make_tensor(g.name("classes"), TensorProto.STRING, [len(classes)],
                                           [s.encode("utf-8") for s in labels])
                g.inits.append(const)
                cname = const.name
            else:
                cname = g.const("classes", labels)
            g.op("Gather", [cname, idx], output="label", axis=0)
        else:
            ltype = TensorProto.INT64
            g.op("Identity", [idx], output="label")
        outputs.append(helper.make_tensor_value_info("label", ltype, [n]))
    else:
        g.op("Identity", [x], output="predictions")
        outputs.append(helper.make_tensor_value_info("predictions", TensorProto.FLOAT, [n, net.output_dim]))

    graph = helper.make_graph(g.nodes, "mlp_service_model",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, net.n_features_in])],
                              outputs, initializer=g.inits)
    model = helper.make_model(graph, producer_name="mlp-service", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"model_id": model_id, "task": net.task,
                                   "classes": json.dumps(classes) if classes is not None else "null"})
    onnx.checker.check_model(model)
    return model
