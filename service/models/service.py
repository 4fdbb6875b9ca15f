"""Trained-model service functions: read, list, delete, and predict through an in-process LRU model cache."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

import core
from core.preprocessing import text_key
from service.bodies import NUMBERS, ParseError, numbers_at, parse_json, rows_to_float32
from service.database import get_owned, get_owned_or_raise, page, utcnow
from service.dialects import NA_TOKENS
from service.errors import InvalidInput, NotFound, echo
from service.metrics import CACHE_HITS, CACHE_MISSES, PREDICTED_ROWS
from service.models.tables import TrainedModel
from service.storage import Storage
from service.sweeps import usage as sweeps_usage

REVALIDATE_SECONDS = 5.0      # a cached model is re-checked against the table at most this often


def artifact_key(model_id: str) -> str:
    """Storage key of a model's weights (a core Network.save file)."""
    return f"models/{model_id}/model.npz"


def save_weights(storage: Storage, *, model_id: str, net: core.Network) -> str:
    """Write the network under the model's key (atomically; uploaded when storage is remote); returns the key."""
    key = artifact_key(model_id)
    path = storage.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save(path)  # atomic: temp file, fsync, rename
    storage.upload_local(key)  # remote storage (s3://) uploads the file just written
    return key


def delete_weights(storage: Storage, *, model_id: str) -> None:
    """Remove a model's stored weights (its row is deleted, or was never committed)."""
    storage.delete_prefix(artifact_key(model_id).rsplit("/", 1)[0])  # the model's folder


def new_from_job(storage: Storage, *, model_id: str, net: core.Network, job, network, dataset,
                 metrics: dict) -> TrainedModel:
    """Save a trained network's weights and build its row (not added: the job's completion commits it)."""
    key = save_weights(storage, model_id=model_id, net=net)
    return TrainedModel(id=model_id, owner=job.owner, job_id=job.id, network_id=network.id, dataset_id=dataset.id,
                        task=dataset.task, classes=dataset.classes, input_dim=int(net.n_features_in),
                        output_dim=net.output_dim, metrics=metrics, artifact_key=key, created_at=utcnow())


def get(session: Session, *, owner: str, model_id: str) -> TrainedModel | None:
    """The caller's model with this id, or None."""
    return get_owned(session, TrainedModel, owner=owner, row_id=model_id)


def get_or_raise(session: Session, *, owner: str, model_id: str) -> TrainedModel:
    """The caller's model, or NotFound (also for another tenant's id)."""
    return get_owned_or_raise(session, TrainedModel, owner=owner, row_id=model_id, noun="model")


def list_(session: Session, *, owner: str, limit: int, offset: int,
          job_id: str | None = None) -> tuple[list[TrainedModel], int]:
    """One page of the caller's models, newest first, and the total count."""
    cond = [TrainedModel.owner == owner]
    if job_id is not None:
        cond.append(TrainedModel.job_id == job_id)
    return page(session, TrainedModel, *cond, limit=limit, offset=offset)


def delete(session: Session, *, owner: str, storage: Storage, model_id: str, cache: "ModelCache") -> None:
    """Delete the row, then the weights, and drop the model from this process's cache (Conflict while it is a
    trial's model of a running sweep)."""
    row = get_or_raise(session, owner=owner, model_id=model_id)
    sweeps_usage.ensure_model_deletable(session, owner=owner, model_id=model_id, job_id=row.job_id)
    session.delete(row)
    session.commit()
    cache.evict(owner, model_id)
    delete_weights(storage, model_id=model_id)


# ----------------------------------------------------------------------------- cache and prediction

@dataclass
class LoadedModel:
    """A model ready to predict: the engine network plus what the answer needs; ``lock`` serialises predict."""

    model_id: str
    net: core.Network
    task: str
    classes: list | None
    input_dim: int
    columns: core.Preprocessor | None = None   # names, types and categories of the raw input columns
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked_at: float = field(default_factory=time.monotonic)
    chunk_rows: int = 1 << 30      # rows per forward pass, so activations stay within MLP_PREDICT_MEMORY_BYTES
    n_params: int = 0              # weights touched per row: rows x n_params is the work of a predict
    dropped: frozenset = frozenset()   # names predict by name accepts and drops: the target, ignored columns

    def cost(self, n_rows: int) -> int:
        """The work of predicting ``n_rows`` rows (multiply-adds, about)."""
        return n_rows * max(self.n_params, 1)

    def needs_check(self) -> bool:
        """True when the row was last seen more than REVALIDATE_SECONDS ago."""
        return time.monotonic() - self.checked_at > REVALIDATE_SECONDS


class ModelCache:
    """LRU of loaded networks keyed by (owner, model id); core.Network.load runs once per model."""

    def __init__(self, capacity: int, predict_memory_bytes: int = 64 * 2**20):
        self.capacity = capacity
        self.predict_memory_bytes = predict_memory_bytes  # activations of one predict chunk (MLP_PREDICT_MEMORY_BYTES)
        self._items: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: str, model_id: str, *, count: bool = True) -> LoadedModel | None:
        with self._lock:
            item = self._items.get((owner, model_id))
            if item is not None:
                self._items.move_to_end((owner, model_id))
        if item is not None and count:
            CACHE_HITS.inc()
        return item

    def put(self, owner: str, item: LoadedModel) -> LoadedModel:
        with self._lock:
            key = (owner, item.model_id)
            existing = self._items.get(key)
            if existing is not None:
                self._items.move_to_end(key)
                return existing
            self._items[key] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return item

    def evict(self, owner: str, model_id: str) -> None:
        with self._lock:
            self._items.pop((owner, model_id), None)

    def __len__(self) -> int:
        return len(self._items)


def load(session: Session, storage: Storage, *, owner: str, model_id: str, cache: ModelCache) -> LoadedModel:
    """The cached model, or read its row and weights once and cache them."""
    item = cache.get(owner, model_id)
    if item is not None:
        return item
    row = get_or_raise(session, owner=owner, model_id=model_id)
    if not storage.exists(row.artifact_key):
        raise NotFound(f"model {model_id} has no stored weights ({row.artifact_key} is missing)")
    CACHE_MISSES.inc()
    with storage.open_read(row.artifact_key) as fh:
        net = core.Network.load(fh)
    classes = list(row.classes) if row.classes is not None else None
    widest = max([int(net.n_features_in)] + [int(c.get("units", 0)) for c in net.spec["layers"]])
    # two activations of the widest layer alive at a time (the layer's input and output), float32 or float64
    chunk = max(1, cache.predict_memory_bytes // (2 * 8 * widest))
    return cache.put(owner, LoadedModel(model_id=row.id, net=net, task=net.task, classes=classes,
                                        input_dim=int(net.n_features_in), columns=_columns(net),
                                        chunk_rows=chunk, n_params=int(net.n_params or 0),
                                        dropped=_non_inputs(net)))


def _non_inputs(net: core.Network) -> frozenset:
    """The training file's columns that are not inputs (target, ignored columns, sample weights), which predict
    by name accepts and drops, as the model file records them (models saved before it did record none: a model
    stands on its own, its data set is not read). Never one of the model's own columns."""
    names = (net.meta or {}).get("non_inputs") or []
    inputs = {c["name"] for c in _columns(net).columns}
    return frozenset(str(n) for n in names if str(n) not in inputs)


def _columns(net: core.Network) -> core.Preprocessor:
    """The model's raw input columns: its preprocessor, or (no preprocessing stored) all numeric, named as trained."""
    if net.preprocessor is not None:
        return net.preprocessor
    d = int(net.n_features_in)
    names = (net.meta or {}).get("feature_names") or []
    if len(names) != d:
        names = [f"x{j}" for j in range(d)]
    ident = core.Preprocessor([{"name": str(n), "type": "numeric"} for n in names],
                              numeric={"impute": None, "scale": "none"})
    return ident.fit(np.zeros((1, d)))


def input_schema(net: core.Network) -> list[dict]:
    """Per raw input column, in order: name, type, categories, how missing values are filled, scaling."""
    if net.preprocessor is not None:
        return net.preprocessor.schema()
    return [{"name": c["name"], "type": "numeric",
             "missing": {"strategy": None, "detail": "a missing value is an error"},
             "scale": {"method": "none"}} for c in _columns(net).columns]


def read(session: Session, storage: Storage, *, owner: str, model_id: str, cache: ModelCache) -> dict:
    """The model's row as the API shows it, with ``input_schema`` from its stored preprocessing."""
    row = get_or_raise(session, owner=owner, model_id=model_id)
    model = load(session, storage, owner=owner, model_id=model_id, cache=cache)
    out = {c: getattr(row, c) for c in ("id", "job_id", "network_id", "dataset_id", "task", "classes",
                                        "input_dim", "output_dim", "metrics", "created_at")}
    out["input_schema"] = input_schema(model.net)
    return out


def revalidate(session: Session, *, owner: str, model_id: str, cache: ModelCache) -> None:
    """Drop a cached model whose row is gone (deleted through another API process) and answer 404."""
    exists = session.scalar(select(TrainedModel.id).where(TrainedModel.id == model_id,
                                                          TrainedModel.owner == owner))
    if exists is None:
        cache.evict(owner, model_id)
        raise NotFound(f"model {model_id} not found")
    item = cache.get(owner, model_id, count=False)
    if item is not None:
        item.checked_at = time.monotonic()


BODY_SHAPES = ('{"inputs": [[...], ...]}, {"records": [{"column": value, ...}, ...]} or '
               '{"columns": [...], "data": [[...], ...]}')


def parse_inputs(body: bytes | bytearray, *, input_dim: int, columns: core.Preprocessor | None = None,
                 drop=frozenset()) -> np.ndarray:
    """The predict body -> raw rows (n, input_dim) for the model; 422 naming the row, column or field.

    ``{"inputs": [[...]]}`` (numbers, in the trained column order), ``{"records": [{name: value}]}`` or
    ``{"columns": [names], "data": [[...]]}`` (columns by name in any order, null = missing; names in ``drop``,
    the model's ``dropped``, are accepted and left out)."""
    X = _numeric_inputs(body, input_dim=input_dim, columns=columns)
    if X is not None:
        return X
    return inputs_from_doc(parse_json(body), input_dim=input_dim, columns=columns, drop=drop)


def _numeric_inputs(body: bytes | bytearray, *, input_dim: int, columns: core.Preprocessor | None) -> np.ndarray | None:
    """A big ``{"inputs": [[numbers]]}`` body read without Python floats (bodies.numbers_at): the same float32
    rows as inputs_from_doc's; None for anything else, errors included (the usual path then names them)."""
    if columns is not None and not numeric_only(columns):
        return None
    found = numbers_at(body, ("inputs",))
    if found is None or found[0] != {"inputs": NUMBERS} or found[1].ndim != 2 or found[1].shape[1] != input_dim:
        return None
    with np.errstate(over="ignore"):
        X = found[1].astype(np.float32)
    return X if np.isfinite(X).all() else None


def numeric_only(columns: core.Preprocessor) -> bool:
    """True when every raw input column is numeric (O(1), from the preprocessor's index: no scan per request)."""
    return len(columns.num_idx_) == len(columns.columns)


def inputs_from_doc(doc, *, input_dim: int, columns: core.Preprocessor | None = None,
                    drop=frozenset()) -> np.ndarray:
    """A parsed predict body (one of BODY_SHAPES) -> raw rows (n, input_dim); 422 naming the row, column or field."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"the body must be an object: {BODY_SHAPES}")
    keys = set(doc)
    if keys == {"inputs"}:
        if columns is not None and not numeric_only(columns):
            kinds = ", ".join(f"{c['name']!r} ({c['type']})" for c in columns.columns if c["type"] != "numeric")
            raise InvalidInput(f"inputs: this model has non-numeric columns ({kinds}); send "
                               '{"records": [...]} or {"columns": [...], "data": [[...]]} with values by column name')
        try:
            return rows_to_float32(doc["inputs"], name="inputs", width=input_dim, strict=True)
        except ParseError as exc:
            raise InvalidInput(str(exc)) from None
    if keys == {"records"}:
        names, rows = records_to_rows(doc["records"], where="records")
    elif keys == {"columns", "data"} or keys == {"columns", "data", "index"}:
        names, rows = _split(doc["columns"], doc["data"])   # pandas' to_json(orient="split") adds index: unused
        index = doc.get("index")
        if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
            raise InvalidInput(f"index must be a list with one label per row of data ({len(rows)}); it is "
                               "not used, so it can be left out")
    else:
        extra = sorted(keys - {"inputs", "records", "columns", "data", "index"})
        what = (f"unknown field(s) {echo(extra)}" if extra else f"fields {sorted(keys)} do not go together" if keys
                else "the body names no rows")
        raise InvalidInput(f"{what}; the body is one of {BODY_SHAPES}")
    if columns is None:
        raise InvalidInput("this model predicts from inputs only")
    return from_columns(columns, names, rows, drop=drop, na_values=NA_TOKENS)


def from_columns(columns: core.Preprocessor, names: list, rows: list, *, where: str | None = None,
                 drop=frozenset(), na_values=()) -> np.ndarray:
    """``columns.matrix_from_columns`` (rows of values by column name -> raw float64 rows; names in ``drop``
    accepted and left out; text in ``na_values`` missing), 422 naming the row (from 1) and column of a bad value,
    also of a number float32 cannot hold (the network computes in float32)."""
    try:
        X = columns.matrix_from_columns(names, rows, ignore=drop, na_values=na_values)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}" if where else str(exc)) from None
    with np.errstate(over="ignore"):
        big = np.isinf(X.astype(np.float32))     # as the float32 cast rounds (NaN, a missing value, stays NaN)
    if big.any():
        r, c = (int(v) for v in np.argwhere(big)[0])
        raise InvalidInput(f"{where + ': ' if where else ''}row {r + 1}, column {columns.columns[c]['name']!r}: "
                           f"{X[r, c]:g} is beyond float32's range (about 3.4e38), which the model computes in")
    return X


def records_to_rows(records, *, where: str) -> tuple[list, list]:
    """``[{column: value}, ...]`` -> (column names in first-seen order, rows with None where a record lacks one).

    Keys are matched as the model's names are (``text_key``: trimmed, NFC), so ``" age"`` in one record and
    ``"age"`` in the next are one column; a record naming a column twice that way is a 422."""
    if not isinstance(records, list) or not records:
        raise InvalidInput(f"{where} must be a non-empty list of objects {{column: value}}")
    names: dict[str, str] = {}          # text_key -> the first spelling seen (what error messages echo)
    keys: dict[str, str] = {}           # each raw key's text_key, computed once per distinct spelling
    keyed = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InvalidInput(f"{where}[{i}] must be an object {{column: value}}, got {type(rec).__name__}")
        row = {}
        for k, v in rec.items():
            key = keys.get(k)
            if key is None:
                key = keys[k] = text_key(k)
            if key in row:
                raise InvalidInput(f"{where}[{i}]: column {echo(key)} is given twice")
            row[key] = v
            names.setdefault(key, k)
        keyed.append(row)
    order = list(names)
    return [names[k] for k in order], [[rec.get(k) for k in order] for rec in keyed]


def _split(names, data) -> tuple[list, list]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidInput("columns must be a non-empty list of column names")
    if not isinstance(data, list) or not data:
        raise InvalidInput("data must be a non-empty list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise InvalidInput(f"data[{i}] must be a list of values, got {type(row).__name__}")
        if len(row) != len(names):
            raise InvalidInput(f"data[{i}] has {len(row)} value(s) but columns lists {len(names)} names")
    return names, data


def predict(model: LoadedModel, X: np.ndarray) -> bytes:
    """Run the network under the model's lock; returns the JSON answer (labels mapped through classes)."""
    return encode_json(model, *predict_arrays(model, X))


def predict_arrays(model: LoadedModel, X: np.ndarray, *,
                   blocking: bool = True) -> tuple[np.ndarray | None, np.ndarray] | None:
    """``predict_arrays_unlocked`` under the model's lock; with ``blocking=False``, None if the model is busy."""
    if not model.lock.acquire(blocking=blocking):
        return None
    try:
        return predict_arrays_unlocked(model, X)
    finally:
        model.lock.release()


def _not_finite(out: np.ndarray) -> None:
    """422 naming the first row whose output is not finite (a model never answers null)."""
    flat = out.reshape(out.shape[0], -1)
    if not np.isfinite(flat.sum()):
        bad = ~np.isfinite(flat).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise InvalidInput(f"row {row + 1}: the model's output is not finite for this input (values too large "
                               f"for the trained network); {int(bad.sum())} row(s) affected")


def predict_arrays_unlocked(model: LoadedModel, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(probabilities float32 (n, k) or None, class indices (n,) or regression values float32); caller holds
    the lock."""
    PREDICTED_ROWS.inc(X.shape[0])
    try:
        return _answer(model, X)
    except ValueError as exc:        # e.g. an infinite value in the raw rows (the message names the cell)
        raise InvalidInput(_cell_error(model, X) or str(exc)) from None


def _cell_error(model: LoadedModel, X: np.ndarray) -> str | None:
    """The detail for the first cell of X the model cannot take (infinite; missing without imputation), naming
    its row (from 1) and column by name; None when every cell is finite."""
    if X.dtype.kind != "f":
        return None
    bad = ~np.isfinite(X)
    if not bad.any():
        return None
    r, c = (int(v) for v in np.argwhere(bad)[0])
    cols = model.columns.columns if model.columns is not None else []
    name = f"column {cols[c]['name']!r}" if c < len(cols) else f"column {c + 1}"
    if np.isnan(X[r, c]):
        return (f"row {r + 1}, {name}: a missing value (NaN), but the model was trained without imputation for "
                "this column")
    return f"row {r + 1}, {name}: {X[r, c]} is not a finite number"


def _answer(model: LoadedModel, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    step = model.chunk_rows
    if X.shape[0] > step:  # row chunks: the activations of a wide network stay within the memory budget
        if X.dtype.kind == "f":
            bad = ~np.isfinite(X)
            if bad.any():
                r, c = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"X has a non-finite value at row {r}, column {c}")
        if model.task == "classification":
            proba = np.concatenate([np.asarray(model.net.predict_proba(X[i:i + step]), dtype=np.float32)
                                    for i in range(0, X.shape[0], step)])
            _not_finite(proba)
            return proba, model.net.loss.labels(proba, probabilities=True)
        values = np.concatenate([np.asarray(model.net.predict(X[i:i + step]), dtype=np.float32)
                                 for i in range(0, X.shape[0], step)])
        _not_finite(values)
        return None, values
    if model.task == "classification":
        proba = np.ascontiguousarray(model.net.predict_proba(X), dtype=np.float32)
        _not_finite(proba)
        return proba, model.net.loss.labels(proba, probabilities=True)
    values = np.ascontiguousarray(model.net.predict(X), dtype=np.float32)
    _not_finite(values)
    return None, values


def labels_of(model: LoadedModel, idx: np.ndarray) -> list | np.ndarray:
    """Class indices -> the labels as uploaded (indices when the model has no class list)."""
    if model.classes is None:
        return idx
    classes = model.classes
    return [classes[i] for i in idx.tolist()]


def encode_json(model: LoadedModel, proba: np.ndarray | None, out: np.ndarray) -> bytes:
    """The JSON answer of predict from ``predict_arrays_unlocked``'s result."""
    if proba is not None:
        return orjson.dumps({"predictions": labels_of(model, out), "probabilities": proba},
                            option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"predictions": out}, option=orjson.OPT_SERIALIZE_NUMPY)


def predict_body(model: LoadedModel, body: bytes | bytearray) -> bytes:
    """Parse and predict (under the model's lock); for running in a worker thread."""
    return predict(model, parse_inputs(body, input_dim=model.input_dim, columns=model.columns,
                                       drop=model.dropped))


def try_predict(model: LoadedModel, X: np.ndarray) -> bytes | None:
    """Predict only if the model is free right now (never blocks the event loop); else None."""
    arrays = predict_arrays(model, X, blocking=False)
    return None if arrays is None else encode_json(model, *arrays)
