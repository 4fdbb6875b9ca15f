"""Turn uploaded CSV / .npz / JSON data into float32 feature arrays and encoded targets.

Pure NumPy + stdlib: every problem raises ``ParseError`` whose message names the row and column.
"""

from __future__ import annotations

import csv
import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("classification", "regression")
MAX_CLASSES = 10_000          # a classification target with more labels than this is almost surely a mistake
INFER_MAX_CLASSES = 20        # task inference: at most this many distinct integer values -> classification
_CHUNK_CHARS = 8 << 20        # CSV is parsed in chunks of about this many characters


class ParseError(ValueError):
    """The uploaded data is invalid; the message says where and why."""


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


# ----------------------------------------------------------------------------- targets and task

def _py_number(v: float) -> int | float:
    """A label as a plain JSON number: 3.0 -> 3, 0.5 -> 0.5."""
    v = float(v)
    return int(v) if v.is_integer() else v


def infer_task(y: np.ndarray) -> str:
    """The inference rule documented in the README.

    Non-numeric labels -> classification. A numeric target whose values are all integers is classification
    when it has at most 2 distinct values, or at most 20 distinct values and at least twice as many rows as
    distinct values; anything else is regression.
    """
    if y.dtype.kind in "USO":
        return "classification"
    if y.ndim != 1 or y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        return "regression"
    k = np.unique(y).size
    n = y.shape[0]
    if k <= 2 or (k <= INFER_MAX_CLASSES and 2 * k <= n):
        return "classification"
    return "regression"


def encode_target(y: np.ndarray, task: str | None, *, where: str) -> tuple[str, np.ndarray, list | None, int]:
    """Encode raw labels/targets: returns (task, y_encoded, classes, n_outputs).

    ``y`` is a 1-D array of strings, or a numeric (n,) / (n, m) array already checked finite.
    """
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
                raise ParseError(f"{where}: row {int(np.argwhere(~np.isfinite(y))[0][0])} is not finite")
        with np.errstate(over="ignore", invalid="ignore"):
            yf = y.astype(np.float32)
        if not np.all(np.isfinite(yf)):
            i = int(np.flatnonzero(~np.isfinite(yf).reshape(len(yf), -1).all(axis=1))[0])
            raise ParseError(f"{where}: the value in row {i} is too large for float32")
        if yf.ndim == 2 and yf.shape[1] == 1:
            yf = yf[:, 0]
        return task, yf, None, (1 if yf.ndim == 1 else int(yf.shape[1]))
    # classification
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ParseError(f"classification needs one label per row; {where} has shape {list(y.shape)}")
    labels, idx = np.unique(y, return_inverse=True)
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


# ----------------------------------------------------------------------------- CSV

def _csv_error(lines: list[str], first_line: int, header: list[str], target_idx: int,
               string_target: bool) -> tuple[str, int] | None:
    """Find the first bad cell in ``lines``; returns (message, kind) where kind 1 = non-numeric target only."""
    ncols = len(header)
    for k, row in enumerate(csv.reader(lines)):
        line_no = first_line + k
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != ncols:
            return (f"line {line_no}: expected {ncols} columns (as in the header), found {len(row)}", 0)
        for j, raw in enumerate(row):
            s = raw.strip()
            if j == target_idx:
                if s == "":
                    return (f"line {line_no}, column {j + 1} ({header[j]!r}): empty target value", 0)
                if string_target:
                    continue
                if _not_number(s):
                    return (f"line {line_no}, column {j + 1} ({header[j]!r}): non-numeric target {s!r}", 1)
                continue
            if s == "":
                return (f"line {line_no}, column {j + 1} ({header[j]!r}): empty value (missing values are "
                        f"not supported)", 0)
            if _not_number(s):
                return (f"line {line_no}, column {j + 1} ({header[j]!r}): {s!r} is not a number "
                        f"(feature columns must be numeric)", 0)
    return None


def _line_of_row(lines: list[str], first_line: int, r: int) -> int:
    """File line number of the r-th non-blank line of a chunk."""
    seen = -1
    for k, line in enumerate(lines):
        if line.strip():
            seen += 1
            if seen == r:
                return first_line + k
    return first_line + len(lines) - 1


def _first_failing_line(lines: list[str], kw: dict) -> tuple[int, str]:
    """Bisect a chunk that np.loadtxt rejects down to its first failing line: (index, loadtxt's message)."""
    lo, hi = 0, len(lines)          # invariant: lines[lo:hi] contains the first failing line
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            np.loadtxt(lines[lo:mid], **kw)
        except ValueError:
            hi = mid
        else:
            lo = mid
    try:
        np.loadtxt(lines[lo:lo + 1], **kw)
    except ValueError as exc:
        return lo, str(exc).split(" at row")[0]
    return lo, "could not parse"


def _parse_csv_body(f, header: list[str], target_idx: int, string_target: bool, first_line: int):
    """Parse the data lines; returns (X float32, y float64 | str labels) or raises ParseError/_Restart."""
    ncols = len(header)
    feat = [j for j in range(ncols) if j != target_idx]
    label_codes: dict[str, int] = {}
    kw: dict[str, Any] = dict(delimiter=",", dtype=np.float64, ndmin=2, comments=None, quotechar='"')
    if string_target:
        def code(s: str) -> int:
            s = s.strip()
            if not s:
                raise ValueError("empty target value")
            return label_codes.setdefault(s, len(label_codes))

        kw["converters"] = {target_idx: code}
    xs, ys = [], []
    line_no = first_line
    while True:
        lines = f.readlines(_CHUNK_CHARS)
        if not lines:
            break
        try:
            a = np.loadtxt(lines, **kw)
        except ValueError:
            err = _csv_error(lines, line_no, header, target_idx, string_target)
            if err is None:
                k, why = _first_failing_line(lines, kw)
                raise ParseError(f"line {line_no + k}: {why}") from None
            if err[1] == 1:
                raise _Restart(err[0])
            raise ParseError(err[0]) from None
        if a.shape[0] and a.shape[1] != ncols:
            raise ParseError(f"line {line_no}: expected {ncols} columns (as in the header), found {a.shape[1]}")
        if a.shape[0]:
            Xc = a[:, feat]
            with np.errstate(over="ignore", invalid="ignore"):
                X32 = Xc.astype(np.float32)
            finite = np.isfinite(X32)
            if not finite.all():
                r, c = (int(v) for v in np.argwhere(~finite)[0])
                j = feat[c]
                raw = Xc[r, c]
                what = "NaN" if np.isnan(raw) else ("infinite" if np.isinf(raw) else f"{float(raw)!r} is too "
                                                                                       f"large for float32")
                raise ParseError(f"line {_line_of_row(lines, line_no, r)}, column {j + 1} ({header[j]!r}): "
                                 f"value is not finite ({what})")
            yc = a[:, target_idx]
            if not string_target and not np.isfinite(yc).all():
                r = int(np.flatnonzero(~np.isfinite(yc))[0])
                raise ParseError(f"line {_line_of_row(lines, line_no, r)}, column {target_idx + 1} "
                                 f"({header[target_idx]!r}): target is not finite ({float(yc[r])!r})")
            xs.append(X32)
            ys.append(yc)
        line_no += len(lines)
    if not xs:
        raise ParseError("the CSV has a header row but no data rows")
    X = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    if string_target:
        by_code = sorted(label_codes, key=label_codes.__getitem__)
        y = np.asarray(by_code, dtype=str)[y.astype(np.int64)]
    return X, y


class _Restart(Exception):
    """The target column turned out to hold text: parse again treating it as string labels."""


def parse_csv(path: str | Path, *, target: str | None = None, task: str | None = None) -> ParsedDataset:
    """Parse a comma-separated file with a header row; ``target`` names the label column (default last)."""
    task = _check_task_arg(task)
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            first = f.readline()
            header_line = 1
            while first and not first.strip():
                first = f.readline()
                header_line += 1
            if not first:
                raise ParseError("the file is empty")
            header = [h.strip() for h in next(csv.reader([first]))]
            if len(header) < 2:
                raise ParseError(f"the header row must name at least one feature column and the target column; "
                                 f"found {len(header)} column(s) (is the file comma-separated?)")
            if any(h == "" for h in header):
                raise ParseError(f"header column {header.index('') + 1} has no name")
            dup = next((h for h in header if header.count(h) > 1), None)
            if dup is not None:
                raise ParseError(f"header names column {dup!r} more than once")
            if target in (None, ""):
                target_idx = len(header) - 1
            elif target in header:
                target_idx = header.index(target)
            else:
                raise ParseError(f"target column {target!r} not found; the header has: {', '.join(header)}")
            body_start = f.tell()
            string_target = False
            try:
                X, y = _parse_csv_body(f, header, target_idx, string_target, header_line + 1)
            except _Restart as restart:
                if task == "regression":
                    raise ParseError(f"task 'regression' needs a numeric target: {restart}") from None
                f.seek(body_start)
                string_target = True
                X, y = _parse_csv_body(f, header, target_idx, string_target, header_line + 1)
    except UnicodeDecodeError as e:
        raise ParseError(f"the file is not UTF-8 text (byte offset {e.start})") from None
    names = [h for j, h in enumerate(header) if j != target_idx]
    where = f"target column {header[target_idx]!r}"
    task, y_enc, classes, n_out = encode_target(y, task, where=where)
    return ParsedDataset(X=X, y=y_enc, task=task, classes=classes, feature_names=names,
                         target=header[target_idx], n_outputs=n_out)


# ----------------------------------------------------------------------------- NPZ

def parse_npz(path: str | Path, *, task: str | None = None) -> ParsedDataset:
    """Parse an ``.npz`` with arrays ``X`` (n, d) and ``y`` (n,) or (n, m); never unpickles."""
    task = _check_task_arg(task)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ParseError("not an .npz archive (a bare .npy array was uploaded); save with np.savez(f, X=X, y=y)")
    if magic[:4] != b"PK\x03\x04":
        raise ParseError("not a valid .npz file (expected a zip archive written by np.savez)")
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
        names = [str(v) for v in fn.astype(str).tolist()]
    task, y_enc, classes, n_out = encode_target(y, task, where="y")
    return ParsedDataset(X=X32, y=y_enc, task=task, classes=classes, feature_names=names, n_outputs=n_out)


# ----------------------------------------------------------------------------- JSON

def rows_to_float32(rows: Any, *, name: str, width: int | None = None) -> np.ndarray:
    """A JSON list of equal-length number lists -> float32 (n, d); errors name the row and column."""
    if not isinstance(rows, list):
        raise ParseError(f"{name} must be a list of rows (lists of numbers), got {type(rows).__name__}")
    if not rows:
        raise ParseError(f"{name} is empty: send at least one row")
    X = None
    first = rows[0]
    if type(first) is list and first:
        d = len(first)
        if all(type(row) is list and len(row) == d for row in rows):
            # fast path: one pass over the floats, no intermediate object array
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    X = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float32,
                                    count=len(rows) * d).reshape(len(rows), d)
            except (ValueError, TypeError):
                X = None
    if X is None:
        if not isinstance(first, list):
            raise ParseError(f"{name}[0] must be a list of numbers, got {_json_type(first)}")
        d = len(first)
        if d == 0:
            raise ParseError(f"{name}[0] is empty: send at least one value per row")
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise ParseError(f"{name}[{i}] must be a list of numbers, got {_json_type(row)}")
            if len(row) != d:
                raise ParseError(f"{name}[{i}] has {len(row)} values but {name}[0] has {d} (ragged rows)")
            for j, v in enumerate(row):
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ParseError(f"{name}[{i}][{j}] is not a number: {_json_type(v)}")
        raise ParseError(f"{name} could not be read as a 2-D array of numbers")
    if width is not None and X.shape[1] != width:
        raise ParseError(f"{name} rows must have {width} values (the model's input width), got {X.shape[1]}")
    finite = np.isfinite(X)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        v = rows[i][j]
        raise ParseError(f"{name}[{i}][{j}] is not a finite number: "
                         f"{'null' if v is None else _json_type(v) if not isinstance(v, (int, float)) else v}")
    return X


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, (bool, str)):
        return repr(v).lower() if isinstance(v, bool) else repr(v)
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return repr(v)


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
    X = rows_to_float32(doc["X"], name="X")
    y_raw = doc["y"]
    if not isinstance(y_raw, list):
        raise ParseError("y must be a list (one label or target per row of X)")
    if len(y_raw) != X.shape[0]:
        raise ParseError(f"X has {X.shape[0]} rows but y has {len(y_raw)}")
    kinds = {type(v) for v in y_raw}
    if kinds <= {str}:
        y = np.asarray(y_raw, dtype=str)
    elif kinds <= {int, float}:
        y = np.asarray(y_raw, dtype=np.float64)
        if not np.isfinite(y).all():
            raise ParseError(f"y[{int(np.flatnonzero(~np.isfinite(y))[0])}] is not finite")
        if kinds == {int}:
            y = y.astype(np.int64)
    elif kinds <= {list}:
        y = rows_to_float32(y_raw, name="y").astype(np.float64)
    else:
        bad = [i for i, v in enumerate(y_raw) if type(v) not in (str, int, float)]
        if not bad:
            raise ParseError("y mixes strings and numbers; labels must be all strings or all numbers")
        raise ParseError(f"y[{bad[0]}] must be a number or a string label, got {_json_type(y_raw[bad[0]])}")
    d = X.shape[1]
    names = [f"x{j}" for j in range(d)]
    fn = doc.get("feature_names")
    if fn is not None:
        if not isinstance(fn, list) or len(fn) != d or not all(isinstance(s, str) for s in fn):
            raise ParseError(f"feature_names must be a list of {d} strings")
        names = list(fn)
    task, y_enc, classes, n_out = encode_target(y, task, where="y")
    return name, ParsedDataset(X=X, y=y_enc, task=task, classes=classes, feature_names=names, n_outputs=n_out)


__all__ = ["ParseError", "ParsedDataset", "parse_csv", "parse_npz", "parse_json_dataset", "rows_to_float32",
           "infer_task", "encode_target", "TASKS"]
