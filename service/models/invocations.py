"""MLflow-style scoring: the payloads ``mlflow models serve`` accepts at /invocations, answered as
``{"predictions": [...]}`` (labels as uploaded for classification, values for regression).

JSON bodies hold exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``, pandas'
``to_json(orient="split")``), ``dataframe_records`` (``[{column: value}, ...]``, ``orient="records"``),
``instances`` (rows, or records) or ``inputs`` (rows, or ``{column: [values]}``), plus an optional ``params``
object (accepted, unused). ``text/csv`` bodies are a header line and rows. Named columns are matched to the
model's input columns by name, in any order (categorical text, booleans, null for a missing value); when none
of the names match, the columns are taken in the trained order.
"""

from __future__ import annotations

import numpy as np
import orjson

from service.bodies import parse_json
from service.errors import InvalidInput, UnsupportedMediaType, echo
from service.models import formats, service

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _named(names: list, rows: list, model: service.LoadedModel, where: str) -> np.ndarray:
    """Rows of values under column names -> the model's raw input matrix (columns by name, any order)."""
    names = [str(n) for n in names]
    cols = model.columns
    model_names = [c["name"] for c in cols.columns]
    numeric = service.numeric_only(cols)
    if not set(names) & set(model_names) and len(names) == len(model_names):
        names = model_names                      # no name matches (e.g. pandas' 0, 1, ...): in order
    if numeric and names == model_names:
        try:
            return _rows(rows, where, model.input_dim)      # the fast path: numbers in the trained order
        except InvalidInput:
            pass                                            # nulls (missing values) and the like: below
    return service.from_columns(cols, names, rows, where=where, drop=model.dropped, na_values=service.NA_TOKENS)


def _rows(rows, where: str, width: int) -> np.ndarray:
    try:
        return service.rows_to_float32(rows, name=where, width=width, strict=True)
    except service.ParseError as exc:
        raise InvalidInput(str(exc)) from None


def _positional(rows, model: service.LoadedModel, where: str) -> np.ndarray:
    """Rows of values in the model's column order (numbers; or any values for models with non-numeric columns)."""
    if service.numeric_only(model.columns):
        return _rows(rows, where, model.input_dim)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise InvalidInput(f"{where} must be a non-empty list of rows")
    return _named([c["name"] for c in model.columns.columns], rows, model, where)


def _from_records(records: list, model: service.LoadedModel, where: str) -> np.ndarray:
    return _named(*service.records_to_rows(records, where=where), model, where)


def parse(body: bytes | bytearray, content_type: str | None, model: service.LoadedModel) -> np.ndarray:
    """An MLflow scoring body -> float32 (n, input_dim); 422 naming the key, record, row or column."""
    if media_kind(content_type) == "csv":
        return formats.parse(body, "csv", input_dim=model.input_dim, columns=model.columns,
                             charset=formats.charset_of(content_type), drop=model.dropped)
    doc = parse_json(body)
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
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise InvalidInput('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        columns = value.get("columns")
        if columns is None:
            return _positional(value["data"], model, "dataframe_split.data")
        if not isinstance(columns, list):
            raise InvalidInput("dataframe_split.columns must be a list of column names")
        data = value["data"]
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                raise InvalidInput(f"dataframe_split.data[{i}] must be a list of {len(columns)} values "
                                   "(one per column)")
        return _named(columns, data, model, "dataframe_split")
    if key == "dataframe_records":
        return _from_records(value, model, key)
    if key == "inputs" and isinstance(value, dict):           # columnar: {column: [values]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise InvalidInput("inputs as an object must map each column to a list of values of equal length")
        return _named(list(value), [list(r) for r in zip(*value.values())], model, key)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _from_records(value, model, key)
    return _positional(value, model, key)


def media_kind(content_type: str | None) -> str:
    """``csv`` or ``json`` (also for no Content-Type); 415 naming both for anything else."""
    media = formats.media_type(content_type)
    if media == formats.CSV:
        return "csv"
    if formats.reads_as_json(media):
        return "json"
    raise UnsupportedMediaType(f"Content-Type {echo(media)[1:-1]} is not supported: send {formats.JSON} (the "
                               f"default) or {formats.CSV}")


def invoke(model: service.LoadedModel, body: bytes | bytearray, content_type: str | None) -> bytes:
    """Parse, predict under the model's lock, answer ``{"predictions": [...]}``."""
    X = parse(body, content_type, model)
    proba, out = service.predict_arrays(model, X)
    preds = service.labels_of(model, out) if proba is not None else out
    return orjson.dumps({"predictions": preds}, option=orjson.OPT_SERIALIZE_NUMPY)
