"""Predict without JSON: ``.npy``, Arrow IPC stream, Parquet and CSV bodies; answers as JSON, ``.npy`` or Arrow.

Request bodies (chosen by ``Content-Type``; anything else is the JSON body ``{"inputs": ...}``):

- ``application/x-npy``: one 2-D numeric array (n, input_dim) (``np.save``; never unpickled);
- ``application/vnd.apache.arrow.stream``: an Arrow IPC stream, either input_dim numeric columns (in the
  model's feature order) or one fixed-size-list column of input_dim numbers per row;
- ``application/vnd.apache.parquet`` (also ``application/x-parquet``): a Parquet file, columns as for Arrow;
- ``text/csv``: a header line, then input_dim numeric columns.

Answers (chosen by ``Accept``; JSON when absent or ``*/*``; 406 for anything else):

- ``application/json``: the usual ``{"predictions": [...], "probabilities": [[...]]}``;
- ``application/x-npy``: classification -> the probabilities, float32 (n, n_classes) in the order of the
  model's ``classes``; regression -> the values, float32 (n,) or (n, n_outputs);
- ``application/vnd.apache.arrow.stream``: one record batch with ``prediction`` (labels as uploaded, or the
  values) and, for classification, ``probabilities`` (fixed-size list of n_classes float32).
"""

from __future__ import annotations

import io

import numpy as np

from service.errors import InvalidInput, NotAcceptable
from service.models import service

NPY = "application/x-npy"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv"
JSON = "application/json"
BODY_TYPES = {NPY: "npy", ARROW: "arrow", PARQUET: "parquet", "application/x-parquet": "parquet", CSV: "csv"}
ANSWER_TYPES = {JSON: "json", NPY: "npy", ARROW: "arrow"}


def body_kind(content_type: str | None) -> str:
    """``npy``, ``arrow``, ``parquet``, ``csv``, or ``json`` (the default, also for no Content-Type)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return BODY_TYPES.get(media, "json")


def answer_kind(accept: str | None) -> str:
    """The answer format the Accept header asks for (first supported media range); 406 when none is."""
    if not accept:
        return "json"
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ANSWER_TYPES:
            return ANSWER_TYPES[media]
        if media in ("*/*", "application/*", ""):
            return "json"
    raise NotAcceptable(f"cannot answer in {accept!r}: Accept one of {', '.join(ANSWER_TYPES)}")


# ----------------------------------------------------------------------------- bodies -> float32 matrix

def _npy(body: bytes | bytearray) -> np.ndarray:
    """A .npy body -> array, zero-copy over the body for plain numeric arrays (never unpickles)."""
    fh = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, EOFError) as exc:
        raise InvalidInput(f"the body is not a .npy file: {exc}") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidInput(f"the .npy array must be numeric, got dtype {dtype}")
    count = int(np.prod(shape)) if shape else 1
    offset = fh.tell()
    if len(body) - offset < count * dtype.itemsize:
        raise InvalidInput(f"the .npy body is truncated: shape {shape} needs {count * dtype.itemsize} bytes of "
                           f"data, got {len(body) - offset}")
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _table_to_matrix(table, what: str) -> np.ndarray:
    """An Arrow table of numeric columns (or one fixed-size-list column) -> float32 (n, width)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_columns == 1 and pa.types.is_fixed_size_list(table.schema.field(0).type):
        col = table.column(0).combine_chunks()
        if col.null_count:
            raise InvalidInput(f"{what} column {table.column_names[0]!r} has a missing row at "
                               f"{pc.index(pc.is_null(col), True).as_py()}")
        width = col.type.list_size
        flat = col.flatten()
        if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
            raise InvalidInput(f"{what} column {table.column_names[0]!r} must hold numbers, got {flat.type}")
        if flat.null_count:
            flat = pc.fill_null(pc.cast(flat, pa.float64()), float("nan"))
        return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, name in enumerate(table.column_names):
        col = table.column(j)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)
                or pa.types.is_null(col.type)):
            raise InvalidInput(f"{what} column {name!r} (column {j}) must be numeric, got {col.type}")
        # a missing value becomes NaN: the model's imputer fills it, or predict refuses it naming the cell
        out[:, j] = col.to_numpy(zero_copy_only=False) if not col.null_count else \
            pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
    return out


def _arrow(body: bytes | bytearray):
    import pyarrow as pa
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise InvalidInput(f"the body is not an Arrow IPC stream: {exc}") from None
    return table


def _parquet(body: bytes | bytearray):
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(pa.BufferReader(pa.py_buffer(body)))
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"the body is not a Parquet file: {exc}") from None
    return table


def _csv(body: bytes | bytearray):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    try:
        table = pcsv.read_csv(pa.BufferReader(pa.py_buffer(body)))
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise InvalidInput(f"the CSV body cannot be read (a header line, then numbers): {exc}") from None
    return table


PARSERS = {"npy": _npy, "arrow": _arrow, "parquet": _parquet, "csv": _csv}
WHAT = {"arrow": "Arrow", "parquet": "Parquet", "csv": "CSV"}


def parse(body: bytes | bytearray, kind: str, *, input_dim: int, columns=None) -> np.ndarray:
    """A predict body -> float32 (n, input_dim); 422 naming the shape, column or row.

    ``columns`` (the model's ``core.Preprocessor``) maps named table columns (any order; categorical text,
    booleans, nulls) onto the model's raw input columns."""
    if kind == "json":
        return service.parse_inputs(body, input_dim=input_dim, columns=columns)
    parsed = PARSERS[kind](body)
    if isinstance(parsed, np.ndarray):
        return _checked(parsed, input_dim)
    return parse_table(parsed, WHAT[kind], input_dim=input_dim, columns=columns)


def parse_table(table, what: str, *, input_dim: int, columns=None) -> np.ndarray:
    """An Arrow table -> checked float32 (n, input_dim): numeric columns by name (or in order when no name
    matches), one fixed-size-list column, or (models with categorical/boolean columns, or some trained
    columns left out) values by column name through the model's ``matrix_from_columns``."""
    import pyarrow as pa

    names = [str(n) for n in table.column_names]
    if columns is None or (table.num_columns == 1 and pa.types.is_fixed_size_list(table.schema.field(0).type)):
        return _checked(_table_to_matrix(table, what), input_dim)
    model_names = [c["name"] for c in columns.columns]
    numeric = service.numeric_only(columns)
    if not set(names) & set(model_names) and len(names) == len(model_names):
        if not numeric:
            raise InvalidInput(f"{what} columns {names} are none of the model's columns {model_names}")
        return _checked(_table_to_matrix(table, what), input_dim)              # in order (e.g. unnamed)
    if numeric and set(model_names) <= set(names):
        unknown = [n for n in names if n not in model_names]
        if unknown:
            raise InvalidInput(f"{what}: unknown column(s) {unknown}; the model's columns are {model_names}")
        return _checked(_table_to_matrix(table.select([names.index(n) for n in model_names]), what), input_dim)
    values = [table.column(j).to_pylist() for j in range(table.num_columns)]
    rows = [list(r) for r in zip(*values)]
    if not rows:
        raise InvalidInput("inputs has no rows")
    try:
        X = columns.matrix_from_columns(names, rows)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    return _checked(X, input_dim)


def _checked(X: np.ndarray, input_dim: int) -> np.ndarray:
    if X.ndim == 1 and X.shape[0] == input_dim:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != input_dim:
        raise InvalidInput(f"inputs must have shape (n, {input_dim}) (the model's input width), got {X.shape}")
    if X.shape[0] == 0:
        raise InvalidInput("inputs has no rows")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if np.isinf(X).any():       # NaN is a missing value: the model imputes it, or predict refuses it
        r, c = np.argwhere(np.isinf(X))[0]
        raise InvalidInput(f"inputs[{r}][{c}] is not a finite number: {X[r, c]}")
    return X


# ----------------------------------------------------------------------------- arrays -> answer

def encode(model: service.LoadedModel, proba: np.ndarray | None, out: np.ndarray, kind: str) -> tuple[bytes, str]:
    """(body, media type) of the answer in ``kind`` (json, npy, arrow)."""
    if kind == "json":
        return service.encode_json(model, proba, out), JSON
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, proba if proba is not None else out, allow_pickle=False)
        return buf.getvalue(), NPY
    import pyarrow as pa
    if proba is not None:
        pred = pa.array(model.classes).take(pa.array(out)) if model.classes is not None else pa.array(out)
        k = proba.shape[1]
        cols = {"prediction": pred,
                "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), k)}
    elif out.ndim == 2:
        cols = {"prediction": pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), out.shape[1])}
    else:
        cols = {"prediction": pa.array(out)}
    batch = pa.record_batch(list(cols.values()), names=list(cols))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes(), ARROW


def predict(model: service.LoadedModel, body: bytes | bytearray, kind: str, answer: str, *,
            blocking: bool = True, max_work: int | None = None) -> tuple[bytes, str] | None:
    """Parse, predict under the model's lock and encode; with ``blocking=False``, None if the model is busy or
    the work (rows x parameters) is over ``max_work``."""
    X = parse(body, kind, input_dim=model.input_dim, columns=model.columns)
    if not blocking and max_work is not None and model.cost(X.shape[0]) > max_work:
        return None
    arrays = service.predict_arrays(model, X, blocking=blocking)
    return None if arrays is None else encode(model, *arrays, answer)
