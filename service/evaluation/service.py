"""Evaluate a model on labelled rows (a stored data set or inline rows): metrics by core.metrics, permutation
importance."""

from __future__ import annotations

import math

import numpy as np

import core.metrics as cm
from service.bodies import parse_json
from service.datasets import service as datasets_service
from service.errors import InvalidInput
from service.models import service as models

IMPORTANCE_MAX_ROWS = 2000     # permutation importance scores a seeded sample of at most this many rows
MAX_REPEATS = 20               # n_repeats of permutation importance: 1..MAX_REPEATS
_OPTIONS = {"dataset_id", "targets", "importance", "n_repeats", "seed"}
_SHAPES = {"inputs", "records", "columns", "data"}


def parse(body: bytes) -> dict:
    """The evaluate body -> {"dataset_id" or "rows" (the predict-shaped part) + "targets", importance options}."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput('the body must be an object: {"dataset_id": ...} or rows as predict takes them '
                           'with "targets"')
    unknown = sorted(set(doc) - _OPTIONS - _SHAPES)
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown}; evaluate takes dataset_id, or inputs / records / "
                           "columns + data with targets, and importance, n_repeats, seed")
    rows = {k: doc[k] for k in _SHAPES if k in doc}
    if ("dataset_id" in doc) == bool(rows):
        raise InvalidInput("send exactly one of dataset_id or inline rows (inputs, records, or columns + data)")
    if rows and "targets" not in doc:
        raise InvalidInput("targets: required with inline rows (one label or value per row)")
    if "dataset_id" in doc and "targets" in doc:
        raise InvalidInput("targets: not allowed with dataset_id (the data set's own targets are used)")
    if "dataset_id" in doc and not isinstance(doc["dataset_id"], str):
        raise InvalidInput("dataset_id must be a string")
    importance = doc.get("importance", False)
    if not isinstance(importance, bool):
        raise InvalidInput("importance must be true or false")
    n_repeats, seed = doc.get("n_repeats", 5), doc.get("seed", 0)
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or not 1 <= n_repeats <= MAX_REPEATS:
        raise InvalidInput(f"n_repeats must be an integer from 1 to {MAX_REPEATS}, got {n_repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    return {"dataset_id": doc.get("dataset_id"), "rows": rows or None, "targets": doc.get("targets"),
            "importance": importance, "n_repeats": n_repeats, "seed": seed}


def _label_index(model: models.LoadedModel, targets) -> np.ndarray:
    """Labels as uploaded -> class indices of the model; 422 naming the first unknown label."""
    classes = model.classes or []
    index = {repr(c): i for i, c in enumerate(classes)}
    by_text = {str(c): i for i, c in enumerate(classes)}
    out = np.empty(len(targets), dtype=np.int64)
    for r, t in enumerate(targets):
        i = index.get(repr(t), by_text.get(str(t)) if not isinstance(t, (list, dict)) else None)
        if i is None and isinstance(t, float) and t.is_integer():  # 1.0 is the class 1 (JSON writers emit both)
            i = index.get(repr(int(t)))
        if i is None:
            raise InvalidInput(f"targets[{r}]: label {t!r} is not one of the model's classes {classes}")
        out[r] = i
    return out


def _regression_targets(targets) -> np.ndarray:
    try:
        y = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("targets must be numbers (or equal-length lists of numbers) for a regression model") from None
    if y.ndim not in (1, 2):
        raise InvalidInput(f"targets must be one value (or one list of values) per row, got shape {list(y.shape)}")
    bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if bad.any():
        raise InvalidInput(f"targets[{int(np.argmax(bad))}] is not a finite number")
    return y


def inline_data(model: models.LoadedModel, req: dict) -> tuple[np.ndarray, np.ndarray]:
    """(raw rows, targets) of an inline body; targets are class indices or float values."""
    X = models.inputs_from_doc(req["rows"], input_dim=model.input_dim, columns=model.columns, drop=model.dropped)
    targets = req["targets"]
    if not isinstance(targets, list) or len(targets) != X.shape[0]:
        got = len(targets) if isinstance(targets, list) else type(targets).__name__
        raise InvalidInput(f"targets must be a list of one label or value per row ({X.shape[0]} rows), got {got}")
    if model.task == "classification":
        return X, _label_index(model, targets)
    return X, _regression_targets(targets)


def dataset_data(session, storage, model: models.LoadedModel, *, owner: str,
                 dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw rows, targets) of a stored data set, columns matched to the model's by name."""
    ds = datasets_service.get_or_raise(session, owner=owner, dataset_id=dataset_id)
    if ds.task != model.task:
        raise InvalidInput(f"dataset_id: data set {dataset_id} is for {ds.task}, the model for {model.task}")
    X, y = datasets_service.load_arrays(storage, ds, mmap=True)
    want = [c["name"] for c in model.columns.columns] if model.columns is not None else []
    names = list(ds.feature_names or [])
    if X.shape[1] != model.input_dim or (names and want and names != want):
        missing = [n for n in want if n not in names]
        if missing or not names:
            raise InvalidInput(f"dataset_id: data set {dataset_id} has {X.shape[1]} column(s), the model takes "
                               f"{model.input_dim}" + (f"; missing column(s) {missing}" if missing else ""))
        X = X[:, [names.index(n) for n in want]]
    if model.task == "classification":
        return np.asarray(X), _label_index(model, [ds.classes[int(i)] for i in np.asarray(y)])
    return np.asarray(X), np.asarray(y, dtype=np.float64)


def _clean(v):
    """JSON-able figures: arrays -> lists, NaN -> None."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _scores(model: models.LoadedModel, X: np.ndarray) -> np.ndarray:
    proba, out = models.predict_arrays(model, X)
    return proba if model.task == "classification" else out


def _report(model: models.LoadedModel, X: np.ndarray, y: np.ndarray) -> dict:
    s = _scores(model, X)
    if model.task == "regression":
        s = np.asarray(s, dtype=np.float64)
        if s.reshape(len(s), -1).shape != y.reshape(len(y), -1).shape:
            raise InvalidInput(f"targets: the model predicts {s.reshape(len(s), -1).shape[1]} value(s) per row, "
                               f"targets hold {y.reshape(len(y), -1).shape[1]}")
        s = s.reshape(y.shape)
    return cm.classification_report(y, s) if model.task == "classification" else cm.regression_report(y, s)


def importance(model: models.LoadedModel, X: np.ndarray, y: np.ndarray, *, n_repeats: int, seed: int) -> dict:
    """Permutation importance: per input column, mean and std of the metric drop over seeded shuffles."""
    rng = np.random.default_rng([seed, 7])
    if X.shape[0] > IMPORTANCE_MAX_ROWS:
        keep = np.sort(rng.choice(X.shape[0], IMPORTANCE_MAX_ROWS, replace=False))
        X, y = X[keep], y[keep]
    metric = "accuracy" if model.task == "classification" else "r2"
    base = _report(model, X, y)[metric]
    names = ([c["name"] for c in model.columns.columns] if model.columns is not None
             else [f"x{j}" for j in range(X.shape[1])])
    work = np.array(X, copy=True)
    columns = []
    for j, name in enumerate(names):
        drops = []
        for _ in range(n_repeats):
            work[:, j] = X[rng.permutation(X.shape[0]), j]
            drops.append(base - _report(model, work, y)[metric])
        work[:, j] = X[:, j]
        columns.append({"column": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    return {"metric": metric, "baseline": float(base), "rows": int(X.shape[0]), "n_repeats": n_repeats,
            "seed": seed, "columns": columns}


def evaluate(model: models.LoadedModel, X: np.ndarray, y: np.ndarray, req: dict) -> dict:
    """The evaluate answer: row count and metrics; classification adds the confusion matrix and per-class figures."""
    rep = _report(model, X, y)
    out = {"model_id": model.model_id, "task": model.task, "rows": int(X.shape[0])}
    if model.task == "classification":
        labels = model.classes or list(range(rep["confusion_matrix"].shape[0]))
        matrix, per = rep.pop("confusion_matrix"), rep.pop("per_class")
        out["metrics"] = rep
        out["confusion_matrix"] = {"labels": labels, "matrix": matrix}
        out["per_class"] = [{"label": lab, "precision": float(per["precision"][i]), "recall": float(per["recall"][i]),
                             "f1": float(per["f1"][i]), "support": int(per["support"][i])}
                            for i, lab in enumerate(labels)]
    else:
        out["metrics"] = rep
    if req["importance"]:
        out["importance"] = importance(model, X, y, n_repeats=req["n_repeats"], seed=req["seed"])
    return _clean(out)
