"""Open Inference Protocol v2: model metadata, and inference requests/answers as JSON tensors or with the binary
tensor extension (``Inference-Header-Content-Length``).

A model takes one input tensor ``input`` of shape [-1, input_dim] (any numeric datatype; BYTES elements are
read as numbers) and answers, for classification, ``label`` ([-1]; BYTES for string labels, INT64 or FP64 for
numeric ones) and ``probabilities`` (FP32 [-1, n_classes]); for regression ``predictions`` (FP32
[-1, n_outputs]). The model's name is its id; its only version is ``1``.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from service.bodies import numbers_at
from service.errors import InvalidInput
from service.models import formats, service

VERSION = "1"
PLATFORM = "mlp-service_numpy"
DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
INPUT = "input"


def _label_datatype(model: service.LoadedModel) -> str:
    classes = model.classes
    if classes is None or all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


def outputs_of(model: service.LoadedModel) -> list[dict]:
    """Name, datatype and shape (-1 for the batch dimension) of each output tensor."""
    if model.task == "classification":
        k = len(model.classes) if model.classes is not None else max(2, model.net.output_dim)
        return [{"name": "label", "datatype": _label_datatype(model), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]}]
    return [{"name": "predictions", "datatype": "FP32", "shape": [-1, model.net.output_dim]}]


def metadata(model: service.LoadedModel) -> dict:
    """The model metadata answer."""
    return {"name": model.model_id, "versions": [VERSION], "platform": PLATFORM,
            "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, model.input_dim]}],
            "outputs": outputs_of(model)}


# ----------------------------------------------------------------------------- requests

def split_body(body: bytes | bytearray, header_length: str | None) -> tuple[dict, memoryview]:
    """The JSON inference header and the binary data after it (empty without the binary extension)."""
    view = memoryview(body)
    if header_length is None:         # a big JSON tensor of FP32/FP64 numbers: read without Python floats
        found = numbers_at(body, ("inputs", 0, "data"))
        if found is not None and found[0]["inputs"][0].get("datatype") in ("FP32", "FP64"):
            found[0]["inputs"][0]["data"] = found[1]
            return found[0], view[len(body):]
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {n} is outside the body's {len(body)} bytes")
        head, rest = view[:n], view[n:]
    else:
        head, rest = view, view[len(body):]
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the inference request must be a JSON object with 'inputs'")
    return doc, rest


def _bytes_elements(raw: memoryview, count: int, name: str) -> list[bytes]:
    out, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(raw):
            raise InvalidInput(f"input '{name}': binary BYTES data ends inside an element's length")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise InvalidInput(f"input '{name}': binary BYTES data ends inside an element")
        out.append(bytes(raw[pos:pos + n]))
        pos += n
    return out


def _numbers(values: list, name: str) -> np.ndarray:
    """BYTES elements (str or bytes) read as numbers."""
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v.decode() if isinstance(v, bytes) else v)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise InvalidInput(f"input '{name}': element {i} ({v!r}) is not a number") from None
    return out


def _json_data(data: list | np.ndarray, dtype_name: str, count: int, shape: list[int]) -> np.ndarray:
    """A JSON tensor's ``data`` (flat or nested, row-major) -> a flat array of ``count`` elements."""
    if isinstance(data, np.ndarray):  # FP32/FP64 numbers from bodies.numbers_at: float64, cast as numpy casts
        with np.errstate(over="ignore"):
            X = data.astype(DTYPES[dtype_name])
    elif dtype_name == "BYTES":
        if data and isinstance(data[0], list):
            data = [v for row in data for v in (row if isinstance(row, list) else [row])]
        X = _numbers(data, INPUT)
    else:
        try:                      # numpy reads nested lists in one call (no flattening in Python)
            X = np.array(data, dtype=DTYPES[dtype_name])
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"input '{INPUT}': data must hold {dtype_name} numbers "
                               "(a flat or nested list of equal-length rows)") from None
    if X.size != count:
        raise InvalidInput(f"input '{INPUT}': data has {X.size} elements but shape {shape} needs {count}")
    return X.reshape(-1)


def input_matrix(doc: dict, binary: memoryview, model: service.LoadedModel) -> np.ndarray:
    """The request's input tensor as float32 (n, input_dim); 400 naming the input, shape, datatype or element."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("the inference request needs 'inputs': a list with the tensor 'input'")
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != INPUT:
        names = [t.get("name") if isinstance(t, dict) else t for t in inputs]
        raise InvalidInput(f"model '{model.model_id}' takes one input tensor '{INPUT}', got {names}")
    t = inputs[0]
    shape, dtype_name = t.get("shape"), t.get("datatype")
    if (not isinstance(shape, list) or len(shape) != 2 or not all(type(s) is int and s >= 0 for s in shape)
            or shape[1] != model.input_dim):
        raise InvalidInput(f"input '{INPUT}': shape must be [n, {model.input_dim}] (the model's input width), "
                           f"got {shape}")
    if dtype_name != "BYTES" and dtype_name not in DTYPES:
        raise InvalidInput(f"input '{INPUT}': unsupported datatype {dtype_name!r}; use FP32, FP64, INT64, "
                           "another numeric type, or BYTES")
    count = shape[0] * shape[1]
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or size > len(binary):
            raise InvalidInput(f"input '{INPUT}': binary_data_size {size!r} exceeds the {len(binary)} bytes of "
                               "binary data after the JSON header")
        raw = binary[:size]
        if dtype_name == "BYTES":
            X = _numbers(_bytes_elements(raw, count, INPUT), INPUT)
        else:
            dt = np.dtype(DTYPES[dtype_name]).newbyteorder("<")
            if size != count * dt.itemsize:
                raise InvalidInput(f"input '{INPUT}': binary_data_size is {size} bytes but shape {shape} of "
                                   f"{dtype_name} needs {count * dt.itemsize}")
            X = np.frombuffer(raw, dtype=dt)
    else:
        data = t.get("data")
        if not isinstance(data, (list, np.ndarray)):
            raise InvalidInput(f"input '{INPUT}' needs 'data' (a flat or nested list) or binary_data_size")
        X = _json_data(data, dtype_name, count, shape)
    return formats._checked(X.reshape(shape[0], shape[1]), model.input_dim)


# ----------------------------------------------------------------------------- answers

def _requested(doc: dict, available: list[str], model_id: str) -> list[tuple[str, bool]]:
    """(output name, as binary) pairs, in the order asked (all outputs when 'outputs' is absent)."""
    params = doc.get("parameters") or {}
    default_binary = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    asked = doc.get("outputs")
    if asked is None:
        return [(n, default_binary) for n in available]
    if not isinstance(asked, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...}")
    out = []
    for o in asked:
        name = o.get("name") if isinstance(o, dict) else None
        if name not in available:
            raise InvalidInput(f"unexpected inference output {name!r} for model '{model_id}'; it has {available}")
        p = o.get("parameters") or {}
        out.append((name, bool(p.get("binary_data", default_binary)) if isinstance(p, dict) else default_binary))
    return out


def _tensor(name: str, model: service.LoadedModel, proba, out) -> tuple[str, list[int], np.ndarray | list]:
    n = out.shape[0]
    if name == "probabilities":
        return "FP32", list(proba.shape), proba
    if name == "label":
        dt = _label_datatype(model)
        if model.classes is None:
            return dt, [n], out.astype(np.int64)
        if dt == "BYTES":
            return dt, [n], [str(v) for v in service.labels_of(model, out)]
        return dt, [n], np.asarray(service.labels_of(model, out), dtype=np.int64 if dt == "INT64" else np.float64)
    values = out.reshape(n, -1)
    return "FP32", list(values.shape), values


def answer(doc: dict, model: service.LoadedModel, proba: np.ndarray | None, out: np.ndarray) -> tuple[bytes, dict]:
    """The inference answer's body and headers (binary outputs after the JSON header when asked for)."""
    available = [o["name"] for o in outputs_of(model)]
    tensors, blobs = [], []
    for name, binary in _requested(doc, available, model.model_id):
        dt, shape, value = _tensor(name, model, proba, out)
        entry = {"name": name, "datatype": dt, "shape": shape}
        if binary:
            if dt == "BYTES":
                raw = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in value))
            else:
                raw = np.ascontiguousarray(value, dtype=np.dtype(value.dtype).newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = value.reshape(-1) if isinstance(value, np.ndarray) else value
        tensors.append(entry)
    head = {"model_name": model.model_id, "model_version": VERSION, "outputs": tensors}
    if "id" in doc:
        head["id"] = doc["id"]
    js = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return js, {"content-type": "application/json"}
    return js + b"".join(blobs), {"content-type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(js))}


def infer(model: service.LoadedModel, body: bytes | bytearray, header_length: str | None, *,
          blocking: bool = True) -> tuple[bytes, dict] | None:
    """Parse an inference request, predict under the model's lock and build the answer; with
    ``blocking=False``, None when the model is busy."""
    doc, binary = split_body(body, header_length)
    X = input_matrix(doc, binary, model)
    arrays = service.predict_arrays(model, X, blocking=blocking)
    return None if arrays is None else answer(doc, model, *arrays)
