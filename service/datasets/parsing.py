"""Turn uploaded tables (CSV, .csv.gz, Parquet, Arrow), .npz and JSON into stored arrays and column metadata.

Every problem raises ``ParseError`` whose message names the line/row and column. Tabular files are read with
pyarrow in ``tabular.py``; this module dispatches, encodes the target and parses .npz / JSON.

Storage representation of a data set (what the engine's preprocessing relies on)
-----------------------------------------------------------------------------------
``X.npy``: one float32 matrix (n_samples, n_features) holding the non-ignored feature columns in file order
(``feature_names``); the target column is not in it.

- numeric column: the value; missing = NaN. +/-inf (or a value too large for float32) is a 422 naming the
  row/line and column, never stored.
- boolean column: 1.0 / 0.0; missing = NaN.
- categorical column: the integer code of the value as a float, i.e. its index in that column's
  ``categories`` list, which is sorted by string value; missing = NaN.

``y.npy``: int64 class indices into ``classes`` (classification), or float32 (n,) / (n, m) (regression).

The data set row's ``columns`` (JSON) lists every column of the file except the target, in file order::

    {"name": str, "type": "numeric" | "categorical" | "boolean", "missing": int, ...}
    numeric:     "min", "max", "mean", "std"   (over the non-missing values; null when all are missing)
    categorical: "categories": [str, ...] (all of them, sorted), "n_categories": int,
                 "top": [{"value": str, "count": int}, ...] (up to 10, most frequent first)
    boolean:     "true", "false" (counts)
    ignored:     {"name": str, "type": "ignored"}   (not in X)

Feature columns of ``columns`` (the non-ignored ones) are the columns of ``X`` in the same order. A data set
stored before this metadata existed has ``columns`` null: treat every column of ``X`` as numeric.
"""

from __future__ import annotations

import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.bodies import ParseError, float32_text, json_type, rows_to_float32
from service.datasets import archive

TASKS = ("classification", "regression")
MAX_CLASSES = 10_000          # a classification target with more labels than this is almost surely a mistake
INFER_MAX_CLASSES = 20        # task inference: at most this many distinct integer values -> classification


@dataclass
class ParsedDataset:
    """Arrays and metadata ready to store."""

    X: np.ndarray                      # float32 (n, d)
    y: np.ndarray                      # int64 (n,) class indices, or float32 (n,) / (n, m)
    task: str
    classes: list | None
    feature_names: list[str]
    target: str | None = None
    n_outputs: int = 1
    columns: list[dict] | None = None      # the per-column metadata described at the top of this module
    n_dropped: int = 0                     # rows dropped for a missing target (drop_missing_target=true)
    x_file: Path | None = None             # the temporary .npy file X memory-maps (tabular uploads): stored by a
                                           # rename, or removed by ``discard``

    def discard(self) -> None:
        """Remove X's temporary file if it was not stored (idempotent)."""
        if self.x_file is not None:
            self.x_file.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- targets and task

def _py_number(v: int | float) -> int | float:
    """A label as a plain JSON number: 3.0 -> 3, 0.5 -> 0.5; integers stay exact (9007199254740993)."""
    if isinstance(v, int):
        return v
    v = float(v)
    return int(v) if v.is_integer() else v


def infer_task(y: np.ndarray) -> str:
    """The inference rule documented in the README.

    Non-numeric labels -> classification. A numeric target whose values are all integers is classification
    when it has at most 2 distinct values, or at most 20 distinct values and at least twice as many rows as
    distinct values; anything else is regression.
    """
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]                      # labels shaped (n, 1) are labels shaped (n,)
    if y.dtype.kind in "USOb":
        return "classification"
    if y.ndim != 1 or y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        return "regression"
    k = np.unique(y).size
    n = y.shape[0]
    if k <= 2 or (k <= INFER_MAX_CLASSES and 2 * k <= n):
        return "classification"
    return "regression"


def encode_target(y: np.ndarray, task: str | None, *, where: str,
                  unique: tuple | None = None) -> tuple[str, np.ndarray, list | None, int]:
    """Encode raw labels/targets: returns (task, y_encoded, classes, n_outputs).

    ``y`` is a 1-D array of strings, or a numeric (n,) / (n, m) array already checked finite; ``unique``, when
    known, is ``np.unique(y, return_inverse=True)`` (a table's text target, computed through its dictionary).
    """
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if task is None:
        task = infer_task(y)
    if task not in TASKS:
        raise ParseError(f"task must be one of {list(TASKS)}, got {task!r}")
    if task == "regression":
        if y.dtype.kind in "USO":
            bad = next((str(v) for v in y.reshape(-1) if _not_number(v)), None)
            if bad is not None:
                raise ParseError(f"task 'regression' needs a numeric target, but {where} has the non-numeric "
                                 f"value {bad!r}; use task=classification")
            y = y.astype(np.float64)          # numbers written as strings
            if not np.isfinite(y).all():
                raise ParseError(f"{where}: the value in row {int(np.argwhere(~np.isfinite(y))[0][0]) + 1} is not "
                                 f"finite")
        with np.errstate(over="ignore", invalid="ignore"):
            yf = y.astype(np.float32)
        if not np.all(np.isfinite(yf)):
            i = int(np.flatnonzero(~np.isfinite(yf).reshape(len(yf), -1).all(axis=1))[0])
            raise ParseError(f"{where}: the value in row {i + 1} is too large for float32")
        if yf.ndim == 2 and yf.shape[1] == 1:
            yf = yf[:, 0]
        return task, yf, None, (1 if yf.ndim == 1 else int(yf.shape[1]))
    # classification
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ParseError(f"classification needs one label per row; {where} has shape {list(y.shape)}")
    labels, idx = unique if unique is not None else np.unique(y, return_inverse=True)
    if labels.dtype.kind == "U":
        labels, idx = _nfc_labels(labels, idx)
    if labels.size > MAX_CLASSES:
        raise ParseError(f"{where} has {labels.size} distinct labels, more than the {MAX_CLASSES} a "
                         f"classification target may have; use task=regression")
    if labels.dtype.kind in "US":
        classes = [str(v) for v in labels.tolist()]
    elif labels.dtype.kind == "b":
        classes = [bool(v) for v in labels.tolist()]
    else:
        classes = [_py_number(v) for v in labels.tolist()]
    return task, idx.astype(np.int64).reshape(-1), classes, 1


def _nfc_labels(labels: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct text labels and each row's index into them, with the labels in Unicode NFC: ``café``
    typed as ``e`` + combining accent (as macOS writes it) and the composed ``café`` are one class, as they are
    one category in a feature column. Works on the distinct labels only (no pass over the rows unless two merge)."""
    nfc = [unicodedata.normalize("NFC", v) for v in labels.tolist()]
    if nfc == labels.tolist():
        return labels, idx
    merged, remap = np.unique(np.array(nfc, dtype=str), return_inverse=True)
    return merged, remap.reshape(-1)[np.asarray(idx).reshape(-1)]


def _not_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return True
    return False


def _check_task_arg(task: str | None) -> str | None:
    if task in (None, ""):
        return None
    if task not in TASKS:
        raise ParseError(f"task must be one of {list(TASKS)}, got {task!r}")
    return task


def _check_X(X: np.ndarray, cell) -> np.ndarray:
    """Cast to float32 and reject non-finite values; ``cell(i, j)`` describes a position."""
    with np.errstate(over="ignore", invalid="ignore"):
        X32 = X.astype(np.float32, copy=False)
    finite = np.isfinite(X32)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        raw = X[i, j]
        what = "NaN" if np.isnan(raw) else ("infinite" if np.isinf(raw) else f"{float(raw)!r} is too large for "
                                                                              f"float32")
        raise ParseError(f"{cell(i, j)} is not a finite number ({what})")
    return X32


# ----------------------------------------------------------------------------- tabular files (pyarrow)

def parse_table(path: str | Path, *, kind: str = "csv", task: str | None = None, **options: Any) -> ParsedDataset:
    """Parse a CSV (``kind`` "csv" or "csv.gz"), Parquet ("parquet") or Arrow IPC ("arrow") file with pyarrow.

    ``options`` are the fields of ``tabular.TableOptions`` (target, delimiter, na_values, encoding, categorical,
    ignore, max_categories, drop_missing_target, max_columns, x_dir: X built in a .npy file there).
    """
    from service.datasets import tabular

    task = _check_task_arg(task)
    opts = tabular.TableOptions(regression=task == "regression", **options)
    path = Path(path) if isinstance(path, str) else path        # a Path, or a Spool (a CSV still arriving)
    if kind in ("csv", "csv.gz"):
        table = tabular.read_csv(path, opts, gz=kind == "csv.gz")
    elif kind == "parquet":
        table = tabular.read_parquet(path, opts)
    elif kind == "arrow":
        table = tabular.read_arrow(path, opts)
    else:
        raise ParseError(f"unsupported file kind {kind!r}")
    try:
        return _parsed_table(table, task)
    except BaseException:
        if table.x_file is not None:
            table.x_file.unlink(missing_ok=True)
        raise


def _parsed_table(table, task: str | None) -> ParsedDataset:
    """A table's target encoded (its errors as ParseError)."""
    y = table.y
    where = f"target column {table.target!r}"
    if task == "regression" and y.dtype.kind in "US":
        bad = next((str(v) for v in table.y_rows() if _not_number(v)), None)
        raise ParseError(f"task 'regression' needs a numeric target, but {where} has the non-numeric value {bad!r}; "
                         f"use task=classification")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ParseError(f"{where}: the value in data row {i + 1} is not finite ({float(y[i])!r})")
    task, y_enc, classes, n_out = encode_target(y, task, where=where, unique=table.y_codes)
    return ParsedDataset(X=table.X, y=y_enc, task=task, classes=classes, feature_names=table.feature_names,
                         target=table.target, n_outputs=n_out, columns=table.columns, n_dropped=table.n_dropped,
                         x_file=table.x_file)


def parse_csv(path: str | Path, *, target: str | None = None, task: str | None = None, **options: Any) -> ParsedDataset:
    """Parse a delimited text file with a header row; ``target`` names the label column (default last)."""
    return parse_table(path, kind="csv", task=task, target=target, **options)


def numeric_columns(X: np.ndarray, names: list[str]) -> list[dict]:
    """The ``columns`` profile of an all-numeric matrix (npz and JSON uploads)."""
    with np.errstate(all="ignore"):
        X64 = np.asarray(X, dtype=np.float64)
        lo, hi, mean, std = X64.min(0), X64.max(0), X64.mean(0), X64.std(0)
    return [{"name": n, "type": "numeric", "missing": 0, "min": float32_text(lo[j]), "max": float32_text(hi[j]),
             "mean": float(mean[j]), "std": float(std[j])} for j, n in enumerate(names)]


# ----------------------------------------------------------------------------- NPZ

def parse_npz(path: str | Path, *, task: str | None = None) -> ParsedDataset:
    """Parse an ``.npz`` with arrays ``X`` (n, d) and ``y`` (n,) or (n, m); never unpickles."""
    task = _check_task_arg(task)
    archive.check_magic(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ParseError(f"not a valid .npz file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ParseError("not an .npz archive; save with np.savez(f, X=X, y=y)")
    with npz:
        missing = [k for k in ("X", "y") if k not in npz.files]
        if missing:
            raise ParseError(f".npz is missing array(s) {missing}; it holds {npz.files}")
        arrays = {}
        for k in ("X", "y") + (("feature_names",) if "feature_names" in npz.files else ()):
            try:
                arrays[k] = npz[k]
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e):
                    raise ParseError(f"array {k!r} holds Python objects (pickled data), which is never loaded; "
                                     f"save numeric (or string label) arrays") from None
                raise ParseError(f"array {k!r} could not be read ({e})") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise ParseError(f"array {k!r} could not be read ({e})") from None
    X, y = arrays["X"], arrays["y"]
    if X.dtype.kind not in "biuf":
        raise ParseError(f"X must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ParseError(f"X must be 2-D (n_samples, n_features), got shape {list(X.shape)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ParseError(f"X is empty (shape {list(X.shape)})")
    if y.ndim not in (1, 2) or y.ndim == 2 and y.shape[1] == 0:
        raise ParseError(f"y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape {list(y.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ParseError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if y.dtype.kind == "S":
        y = y.astype(str)
    if y.dtype.kind not in "biufU":
        raise ParseError(f"y must hold numbers or strings, got dtype {y.dtype}")
    X32 = _check_X(X, lambda i, j: f"X[{i}, {j}]")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        i = int(np.argwhere(~np.isfinite(y))[0][0])
        raise ParseError(f"y[{i}] is not finite")
    d = X.shape[1]
    names = [f"x{j}" for j in range(d)]
    fn = arrays.get("feature_names")
    if fn is not None:
        if fn.dtype.kind not in "US" or fn.shape != (d,):
            raise ParseError(f"feature_names must be {d} strings, got dtype {fn.dtype} shape {list(fn.shape)}")
        names = _feature_names([str(v) for v in fn.astype(str).tolist()])
    task, y_enc, classes, n_out = encode_target(y, task, where="y")
    return ParsedDataset(X=X32, y=y_enc, task=task, classes=classes, feature_names=names, n_outputs=n_out)


def _feature_names(given: list[str]) -> list[str]:
    """``feature_names`` of an .npz or JSON upload as a CSV header's are kept: trimmed, NFC (what predict compares),
    none empty, none twice."""
    from core.preprocessing import text_key
    from service.datasets.tabular import check_names

    names = [text_key(n) for n in given]
    check_names(names, what="feature_names")
    return names


# ----------------------------------------------------------------------------- JSON

def parse_json_dataset(doc: Any) -> tuple[str | None, ParsedDataset]:
    """Parse the decoded JSON body ``{name, X, y, task?, feature_names?}``; returns (name, parsed)."""
    if not isinstance(doc, dict):
        raise ParseError("the JSON body must be an object {name, X, y, task}")
    unknown = sorted(set(doc) - {"name", "X", "y", "task", "feature_names"})
    if unknown:
        raise ParseError(f"unknown field(s) {unknown}; expected name, X, y, task, feature_names")
    for k in ("X", "y"):
        if k not in doc:
            raise ParseError(f"field {k!r} is required")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise ParseError("name must be a string")
    task = doc.get("task")
    if task is not None and not isinstance(task, str):
        raise ParseError("task must be a string")
    task = _check_task_arg(task)
    X = rows_to_float32(doc["X"], name="X", strict=True)
    y_raw = doc["y"]
    if not isinstance(y_raw, list):
        raise ParseError("y must be a list (one label or target per row of X)")
    if len(y_raw) != X.shape[0]:
        raise ParseError(f"X has {X.shape[0]} rows but y has {len(y_raw)}")
    kinds = {type(v) for v in y_raw}
    if kinds == {bool}:                  # classes [False, True], as an .npz bool y gives
        y = np.asarray(y_raw, dtype=bool)
    elif kinds <= {str}:
        y = np.asarray(y_raw, dtype=str)
    elif kinds == {int}:                 # exact, also past 2**53 (float64 would round); past int64 as text
        try:
            y = np.asarray(y_raw, dtype=np.int64)
        except OverflowError:
            y = np.asarray([str(v) for v in y_raw], dtype=str)
    elif kinds <= {int, float}:
        y = np.asarray(y_raw, dtype=np.float64)
        if not np.isfinite(y).all():
            raise ParseError(f"y[{int(np.flatnonzero(~np.isfinite(y))[0])}] is not finite")
    elif kinds <= {list}:
        y = rows_to_float32(y_raw, name="y", strict=True).astype(np.float64)
    else:
        bad = [i for i, v in enumerate(y_raw) if type(v) not in (str, int, float, bool)]
        if not bad and bool in kinds:
            raise ParseError("y mixes booleans with other values; labels must be all booleans, all strings or all "
                             "numbers")
        if not bad:
            raise ParseError("y mixes strings and numbers; labels must be all strings or all numbers")
        raise ParseError(f"y[{bad[0]}] must be a number or a string label, got {json_type(y_raw[bad[0]])}")
    d = X.shape[1]
    names = [f"x{j}" for j in range(d)]
    fn = doc.get("feature_names")
    if fn is not None:
        if not isinstance(fn, list) or len(fn) != d or not all(isinstance(s, str) for s in fn):
            raise ParseError(f"feature_names must be a list of {d} strings")
        names = _feature_names(fn)
    task, y_enc, classes, n_out = encode_target(y, task, where="y")
    return name, ParsedDataset(X=X, y=y_enc, task=task, classes=classes, feature_names=names, n_outputs=n_out)


__all__ = ["ParseError", "ParsedDataset", "parse_csv", "parse_table", "numeric_columns", "parse_npz", "parse_json_dataset", "rows_to_float32",
           "infer_task", "encode_target", "TASKS"]
