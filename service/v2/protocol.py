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
from service.errors import InvalidInput, echo
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
        except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
            raise InvalidInput(f"input '{name}': element {i} ({echo(v)}) is not a number") from None
    return out


def kind_of(v) -> str:
    """How a JSON value's type is named in an error."""
    if v is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _flat(data) -> list:
    """Nested lists flattened in row-major order (the slow path, for naming a bad element)."""
    out, stack = [], [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _bad_element(data, dtype_name: str) -> InvalidInput:
    """The error naming the first element of ``data`` that is not a number of ``dtype_name``."""
    dt = np.dtype(DTYPES[dtype_name])
    for k, v in enumerate(_flat(data)):
        if v is None and dt.kind == "f":
            continue                               # a missing value (imputed, or refused naming the cell)
        if not isinstance(v, (int, float)) or (isinstance(v, bool) and dt.kind != "b"):
            return InvalidInput(f"input '{INPUT}': element {k} ({echo(v)}) is not a number (datatype {dtype_name})")
        reason = _out_of_type(float(v) if isinstance(v, float) else v, dt, dtype_name)
        if reason:
            return InvalidInput(f"input '{INPUT}': element {k} ({echo(v)}) {reason}")
    return InvalidInput(f"input '{INPUT}': data must hold {dtype_name} numbers, as a flat list or as nested lists "
                        "of equal-length rows")


def _out_of_type(v, dt: np.dtype, dtype_name: str) -> str | None:
    """Why the number ``v`` is not a value of the integer or boolean ``dt`` (None when it is, or dt is float)."""
    if dt.kind == "f":
        return None
    if isinstance(v, float) and not v.is_integer():
        return f"is not {'0 or 1' if dt.kind == 'b' else 'an integer'} (datatype {dtype_name})"
    if dt.kind == "b":
        return None if v in (0, 1) else f"is not 0 or 1 (datatype {dtype_name})"
    info = np.iinfo(dt)
    return None if info.min <= v <= info.max else f"is outside {dtype_name}'s range {info.min}..{info.max}"


def _json_data(data: list | np.ndarray, dtype_name: str, count: int, shape: list[int]) -> np.ndarray:
    """A JSON tensor's ``data`` (flat or nested, row-major) -> a flat array of ``count`` elements; 400 naming
    the first element that is not a number of the datatype (3.7 is not an INT64, -5 not a BOOL)."""
    if isinstance(data, np.ndarray):  # FP32/FP64 numbers from bodies.numbers_at: float64, cast as numpy casts
        with np.errstate(over="ignore"):
            X = data.astype(DTYPES[dtype_name])
    elif dtype_name == "BYTES":
        if data and isinstance(data[0], list):
            data = [v for row in data for v in (row if isinstance(row, list) else [row])]
        X = _numbers(data, INPUT)
    else:
        dt = np.dtype(DTYPES[dtype_name])
        try:                      # numpy reads nested lists in one call (no flattening in Python)
            A = np.array(data)
        except (ValueError, TypeError, OverflowError):
            raise _bad_element(data, dtype_name) from None
        ok = A.dtype.kind in "iuf" or (A.dtype.kind == "b" and dt.kind == "b")
        if ok and dt.kind in "iub" and A.size:     # integers and booleans: whole numbers in the type's range
            if A.dtype.kind == "f":
                ok = bool(np.isfinite(A).all() and (A == np.floor(A)).all())
            if ok and dt.kind == "b":
                ok = bool(((A == 0) | (A == 1)).all())
            elif ok and A.dtype.kind != "b":       # compared as Python ints (float64 rounds 2**63 - 1 up)
                info = np.iinfo(dt)
                lo, hi = A.min(), A.max()
                ok = (float(lo) >= info.min and float(hi) < info.max + 1 if A.dtype.kind == "f"
                      else info.min <= int(lo) and int(hi) <= info.max)
        if not ok:
            if A.dtype.kind == "O" and dt.kind == "f" and not any(
                    v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)) for v in _flat(data)):
                A = np.array([np.nan if v is None else float(v) for v in _flat(data)])   # nulls: missing values
            else:
                raise _bad_element(data, dtype_name)
        with np.errstate(over="ignore"):
            X = A.astype(dt)
    if X.size != count:
        raise InvalidInput(f"input '{INPUT}': data has {X.size} elements but shape {shape} needs {count}")
    return X.reshape(-1)


def _object(value, what: str) -> dict:
    """``value`` when it is a JSON object (None -> {}); 400 naming the field otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be an object, got {kind_of(value)}")
    return value


def input_matrix(doc: dict, binary: memoryview, model: service.LoadedModel) -> np.ndarray:
    """The request's input tensor as float32 (n, input_dim); 400 naming the input, field, shape, datatype or
    element. Every field is checked for its JSON type; binary data must be exactly what the tensor declares."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("the inference request needs 'inputs': a list with the tensor 'input'")
    for k, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise InvalidInput(f"inputs[{k}] must be an object {{name, shape, datatype, data}}, got {kind_of(t)}")
        if not isinstance(t.get("name"), str):
            raise InvalidInput(f"inputs[{k}].name must be a string, got {kind_of(t.get('name'))}")
    if len(inputs) != 1 or inputs[0]["name"] != INPUT:
        names = [t["name"] for t in inputs]
        raise InvalidInput(f"model '{model.model_id}' takes one input tensor '{INPUT}', got {echo(names)}")
    t = inputs[0]
    shape, dtype_name = t.get("shape"), t.get("datatype")
    if not isinstance(shape, list):
        raise InvalidInput(f"input '{INPUT}': shape must be a list [n, {model.input_dim}], got {kind_of(shape)}")
    for i, dim in enumerate(shape):
        if type(dim) is not int or dim < 0:
            raise InvalidInput(f"input '{INPUT}': shape[{i}] must be a non-negative integer, got {echo(dim)}")
    if len(shape) != 2 or shape[1] != model.input_dim:
        raise InvalidInput(f"input '{INPUT}': shape must be [n, {model.input_dim}] (the model's input width), "
                           f"got {echo(shape)}")
    if not isinstance(dtype_name, str):
        raise InvalidInput(f"input '{INPUT}': datatype must be a string such as \"FP32\", got {kind_of(dtype_name)}")
    if dtype_name != "BYTES" and dtype_name not in DTYPES:
        raise InvalidInput(f"input '{INPUT}': unsupported datatype {echo(dtype_name)}; use FP32, FP64, INT64, "
                           "another numeric type, or BYTES")
    count = shape[0] * shape[1]
    params = _object(t.get("parameters"), f"input '{INPUT}': parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input '{INPUT}': parameters.binary_data_size must be a non-negative integer "
                               f"(bytes), got {echo(size)}")
        if "data" in t:
            raise InvalidInput(f"input '{INPUT}' has both 'data' and parameters.binary_data_size: send one")
        if size > len(binary):
            raise InvalidInput(f"input '{INPUT}': binary_data_size {size} exceeds the {len(binary)} bytes of "
                               "binary data after the JSON header")
        if size < len(binary):
            raise InvalidInput(f"the body has {len(binary) - size:,} bytes of binary data after input '{INPUT}''s "
                               f"{size:,} (binary_data_size): Inference-Header-Content-Length or the data is wrong")
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
        if len(binary):
            raise InvalidInput(f"the body has {len(binary):,} bytes after the JSON header "
                               f"(Inference-Header-Content-Length) but input '{INPUT}' has no "
                               "parameters.binary_data_size")
        data = t.get("data")
        if not isinstance(data, (list, np.ndarray)):
            raise InvalidInput(f"input '{INPUT}' needs 'data' (a flat or nested list) or binary_data_size")
        X = _json_data(data, dtype_name, count, shape)
    return formats._checked(X.reshape(shape[0], shape[1]), model.input_dim)


# ----------------------------------------------------------------------------- answers

def _flag(params: dict, key: str, default: bool, what: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{what}.{key} must be true or false, got {echo(value)}")
    return value


def requested(doc: dict, available: list[str], model_id: str) -> list[tuple[str, bool]]:
    """(output name, as binary) pairs, in the order asked (all outputs when 'outputs' is absent); 400 naming a
    field of the wrong type (id, parameters, outputs[k] and its name and parameters)."""
    if "id" in doc and not isinstance(doc["id"], str):
        raise InvalidInput(f"id must be a string, got {kind_of(doc['id'])}")
    default_binary = _flag(_object(doc.get("parameters"), "parameters"), "binary_data_output", False, "parameters")
    asked = doc.get("outputs")
    if asked is None:
        return [(n, default_binary) for n in available]
    if not isinstance(asked, list):
        raise InvalidInput(f"outputs must be a list of {{\"name\": ...}}, got {kind_of(asked)}")
    out = []
    for k, o in enumerate(asked):
        if not isinstance(o, dict):
            raise InvalidInput(f"outputs[{k}] must be an object {{\"name\": ...}}, got {kind_of(o)}")
        name = o.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"outputs[{k}].name must be a string, got {kind_of(name)}")
        if name not in available:
            raise InvalidInput(f"unexpected inference output {echo(name)} for model '{model_id}'; it has {available}")
        p = _object(o.get("parameters"), f"outputs[{k}].parameters")
        out.append((name, _flag(p, "binary_data", default_binary, f"outputs[{k}].parameters")))
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


def answer(doc: dict, model: service.LoadedModel, proba: np.ndarray | None, out: np.ndarray,
           wanted: list[tuple[str, bool]] | None = None) -> tuple[bytes, dict]:
    """The inference answer's body and headers (binary outputs after the JSON header when asked for); ``wanted``
    is ``requested(doc, ...)`` when the caller checked it already."""
    if wanted is None:
        wanted = requested(doc, [o["name"] for o in outputs_of(model)], model.model_id)
    tensors, blobs = [], []
    for name, binary in wanted:
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
    wanted = requested(doc, [o["name"] for o in outputs_of(model)], model.model_id)   # checked before predicting
    arrays = service.predict_arrays(model, X, blocking=blocking)
    return None if arrays is None else answer(doc, model, *arrays, wanted=wanted)
