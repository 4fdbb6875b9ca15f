"""MLflow-style scoring: the payloads ``mlflow models serve`` accepts at /invocations, answered as
``{"predictions": [...]}`` (labels as uploaded for classification, values for regression).

JSON bodies hold exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``, pandas'
``to_json(orient="split")``), ``dataframe_records`` (``[{column: value}, ...]``, ``orient="records"``),
``instances`` (rows, or records) or ``inputs`` (rows, or ``{column: [values]}``), plus an optional ``params``
object (accepted, unused). ``text/csv`` bodies are a header line and numeric rows. Named columns are matched
to the model's input columns by name when the model knows them (trained with named columns), else taken in
the order given.
"""

from __future__ import annotations

import numpy as np
import orjson

from service.errors import InvalidInput
from service.models import formats, service

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def feature_names(model: service.LoadedModel) -> list[str] | None:
    """The model's input column names, or None when it was trained on unnamed columns."""
    pre = getattr(model.net, "preprocessor", None)
    cols = getattr(pre, "columns", None) if pre is not None else None
    default = [f"x{j}" for j in range(model.input_dim)]
    for names in ([c["name"] for c in cols] if cols else None, (model.net.meta or {}).get("feature_names")):
        if isinstance(names, list) and len(names) == model.input_dim and names != default:
            return [str(n) for n in names]
    return None


def _order(given: list, model: service.LoadedModel, where: str) -> list[int] | None:
    """Positions of the model's columns among ``given`` names (None: keep the given order)."""
    names = feature_names(model)
    given = [str(c) for c in given]
    if names is None:
        return None
    pos = {c: i for i, c in enumerate(given)}
    missing = [c for c in names if c not in pos]
    if len(missing) == len(names) and len(given) == len(names):
        return None                                  # none of the names match (e.g. pandas' 0, 1, ...): positional
    if missing:
        raise InvalidInput(f"{where} lacks the model's column(s) {missing}; it needs {names}")
    return [pos[c] for c in names]


def _rows(rows, where: str, width: int) -> np.ndarray:
    try:
        return service.rows_to_float32(rows, name=where, width=width)
    except service.ParseError as exc:
        raise InvalidInput(str(exc)) from None


def _from_columns(columns: list, rows: list, model: service.LoadedModel, where: str) -> np.ndarray:
    order = _order(columns, model, where)
    if order is not None and order != list(range(len(columns))):
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise InvalidInput(f"{where}.data must be rows of {len(columns)} values (one per column)")
        rows = [[r[j] for j in order] for r in rows]
    return _rows(rows, f"{where}.data", model.input_dim)


def _from_records(records: list, model: service.LoadedModel, where: str) -> np.ndarray:
    if not isinstance(records, list) or not records:
        raise InvalidInput(f"{where} must be a non-empty list of records ({{column: value}})")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InvalidInput(f"{where}[{i}] must be an object {{column: value}}")
    names = feature_names(model)
    if names is None or not set(names) & set(records[0]):
        names = list(records[0])
    rows = []
    for i, rec in enumerate(records):
        try:
            rows.append([rec[c] for c in names])
        except KeyError as exc:
            raise InvalidInput(f"{where}[{i}] lacks column {exc.args[0]!r}") from None
    return _rows(rows, where, model.input_dim)


def parse(body: bytes | bytearray, content_type: str | None, model: service.LoadedModel) -> np.ndarray:
    """An MLflow scoring body -> float32 (n, input_dim); 422 naming the key, record, row or column."""
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media == "text/csv":
        import pyarrow as pa
        import pyarrow.csv as pcsv
        try:
            table = pcsv.read_csv(pa.BufferReader(pa.py_buffer(body)))
        except (pa.ArrowInvalid, pa.ArrowException) as exc:
            raise InvalidInput(f"the CSV body cannot be read (a header line, then numbers): {exc}") from None
        order = _order(table.column_names, model, "the CSV header")
        if order is not None:
            table = table.select(order)
        return formats.parse_table(table, "CSV", input_dim=model.input_dim)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the body must be an object with one of {', '.join(KEYS)}")
    present = [k for k in KEYS if k in doc]
    extra = sorted(set(doc) - set(KEYS) - {"params"})
    if len(present) != 1 or extra:
        raise InvalidInput(f"the body must hold exactly one of {', '.join(KEYS)} (and optionally params), "
                           f"got {sorted(doc)}")
    key = present[0]
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise InvalidInput('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        columns = value.get("columns")
        if columns is None:
            return _rows(value["data"], "dataframe_split.data", model.input_dim)
        if not isinstance(columns, list):
            raise InvalidInput("dataframe_split.columns must be a list of column names")
        return _from_columns(columns, value["data"], model, "dataframe_split")
    if key == "dataframe_records":
        return _from_records(value, model, key)
    if key == "inputs" and isinstance(value, dict):           # columnar: {column: [values]}
        columns = list(value)
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise InvalidInput("inputs as an object must map each column to a list of values of equal length")
        rows = [list(r) for r in zip(*value.values())]
        return _from_columns(columns, rows, model, key)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _from_records(value, model, key)
    return _rows(value, key, model.input_dim)


def invoke(model: service.LoadedModel, body: bytes | bytearray, content_type: str | None) -> bytes:
    """Parse, predict under the model's lock, answer ``{"predictions": [...]}``."""
    X = parse(body, content_type, model)
    with model.lock:
        proba, out = service.predict_arrays_unlocked(model, X)
    preds = service.labels_of(model, out) if proba is not None else out
    return orjson.dumps({"predictions": preds}, option=orjson.OPT_SERIALIZE_NUMPY)
