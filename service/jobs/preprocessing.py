"""A job's preprocessing: the core Preprocessor its params and data set describe, and validation rows in its codes."""

from __future__ import annotations

import math

import numpy as np

import core
import core.preprocessing


def columns_of(dataset) -> list[dict]:
    """The data set's column descriptions; data sets without typed columns are all numeric."""
    columns = dataset.columns
    names = list(dataset.feature_names or [])
    if not columns:
        if len(names) != dataset.n_features:
            names = [f"x{j}" for j in range(dataset.n_features)]
        return [{"name": str(n), "type": "numeric"} for n in names]
    columns = [c for c in columns if c.get("type", "numeric") in core.preprocessing.COLUMN_TYPES]  # not "ignored"
    out = []
    for j, c in enumerate(columns):
        item = {"name": str(c.get("name", names[j] if j < len(names) else f"x{j}")), "type": c.get("type", "numeric")}
        if item["type"] == "categorical":
            item["categories"] = [str(v) for v in c.get("categories") or []]
        out.append(item)
    return out


def non_inputs(dataset, params: dict | None = None) -> list[str]:
    """Columns of the data set's file that are not model inputs: the target, the columns it ignored (``ignore=``)
    and the job's ``sample_weight_column``. Predict by name accepts and drops them (a row of the training file
    predicts as is)."""
    out = [str(dataset.target)] if dataset.target else []
    out += [str(c["name"]) for c in dataset.columns or [] if c.get("type") == "ignored" and "name" in c]
    weight = (params or {}).get("sample_weight_column")
    if weight is not None:
        out.append(str(weight))
    return out


def weight_column_index(dataset, name: str | None) -> int | None:
    """Position among the data set's feature columns of the numeric ``sample_weight_column``; ValueError naming it."""
    if name is None:
        return None
    columns = columns_of(dataset)
    for j, c in enumerate(columns):
        if c["name"] == name:
            if c["type"] != "numeric":
                raise ValueError(f"sample_weight_column: column {name!r} is {c['type']}; it must be numeric")
            if len(columns) < 2:
                raise ValueError(f"sample_weight_column: column {name!r} is the data set's only feature")
            return j
    raise ValueError(f"sample_weight_column: data set {dataset.id} has no column {name!r}; columns: "
                     f"{', '.join(c['name'] for c in columns[:20])}")


def split_weights(X: np.ndarray, j: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The features without column ``j`` and that column as float64 weights (X itself and None when j is None)."""
    if j is None:
        return X, None
    return np.delete(np.asarray(X), j, axis=1), np.asarray(X[:, j], dtype=np.float64)


def class_weight_indices(class_weight, classes: list) -> str | dict[int, float] | None:
    """``class_weight`` with labels as uploaded turned into class indices; ValueError naming an unknown label."""
    if class_weight is None or isinstance(class_weight, str):
        return class_weight
    index = {str(c): i for i, c in enumerate(classes)}
    out = {}
    for label, weight in class_weight.items():
        if str(label) not in index:
            raise ValueError(f"class_weight: {label!r} is not a class of the data set; classes: "
                             f"{', '.join(map(str, classes[:20]))}")
        out[index[str(label)]] = float(weight)
    if classes and all(out.get(i, 1.0) == 0 for i in range(len(classes))):
        raise ValueError("class_weight: every class has weight 0, so nothing would be learned; give at least one "
                         "class a weight > 0")
    return out


def input_width(dataset, preprocessing: dict | None = None, exclude: str | None = None) -> int:
    """The network's input width after preprocessing, at most (one-hot columns widen it; from the data set's profile);
    ``exclude`` names a column that is not a feature (the sample weights)."""
    columns = dataset.columns
    if not columns:
        return int(dataset.n_features) - (exclude is not None)
    prep = preprocessing or {}
    indicators = bool((prep.get("numeric") or {}).get("add_indicator"))
    cap = (prep.get("categorical") or {}).get("max_categories")
    width = 0
    for c in columns:
        kind = c.get("type", "numeric")
        if kind not in core.preprocessing.COLUMN_TYPES or (exclude is not None and c.get("name") == exclude):
            continue
        missing = bool(c.get("missing"))
        if kind == "categorical":
            n = len(c.get("categories") or []) + int(missing)
            width += min(n, cap) if cap else n
        else:
            width += 1 + int(indicators and kind == "numeric" and missing)
    return width


def build(params: dict, dataset) -> core.Preprocessor:
    """An unfitted Preprocessor for the job (jobs stored before ``preprocessing`` existed map ``standardize``)."""
    columns = columns_of(dataset)
    if params.get("sample_weight_column") is not None:
        columns = [c for c in columns if c["name"] != params["sample_weight_column"]]
    prep = params.get("preprocessing")
    if prep is None:
        return core.Preprocessor.standardize(columns) if params.get("standardize", True) \
            else core.Preprocessor(columns, numeric={"impute": None, "scale": "none"})
    return core.Preprocessor(columns, numeric=dict(prep["numeric"]), categorical=dict(prep["categorical"]))


def align_validation(X_val: np.ndarray, val_dataset, train_dataset) -> np.ndarray:
    """Validation rows as the training set's columns: matched by name (any order), each categorical code
    re-indexed into the training set's categories (a category the training set lacks becomes -1: unseen), as
    batch scoring matches a data set to a model; ValueError naming a column the validation set lacks."""
    train_cols = columns_of(train_dataset)
    if train_cols == columns_of(val_dataset):
        return X_val
    return apply_plan(X_val, scoring_plan(train_cols, val_dataset))


def scoring_plan(model_columns: list[dict], dataset, against: str = "the model") -> list[tuple[int, object]]:
    """Per input column of a model (its ``input_schema`` order): the data set's column index with the same name and
    how its stored values become the model's: None (as they are), a table from the data set's codes to the
    model's values (last entry for out-of-range codes), or a function of the column (numbers read as the
    model's categories). A column typed otherwise than the model's is read as predict reads values (a column
    with no value at all is missing whatever its type; true/false, yes/no text for a boolean column; numbers as
    the text a CSV cell holds, ``1234`` for ``"1234"`` (not ``"01234"``), when some category is a number);
    ValueError naming the first column the data set lacks or that the model (``against``) cannot take."""
    have = {c["name"]: (j, c) for j, c in enumerate(columns_of(dataset))}
    missing = {str(c.get("name")): c.get("missing") for c in (dataset.columns or [])}
    reader = None
    plan = []
    for k, col in enumerate(model_columns):
        name, kind = str(col["name"]), col["type"]
        if name not in have:
            raise ValueError(f"data set {dataset.id} has no column {name!r}, which the model takes as input "
                             f"(the model's columns: {[str(c['name']) for c in model_columns]})")
        j, theirs = have[name]
        if theirs["type"] == kind and kind != "categorical":
            plan.append((j, None))
            continue
        if theirs["type"] != kind and dataset.n_samples and missing.get(name) == dataset.n_samples:
            plan.append((j, None))                      # no value at all: NaN (missing) whatever the type
            continue
        if reader is None:
            reader = core.Preprocessor(model_columns)   # predict's reading of raw values, one home
        mismatch = f"column {name!r} of data set {dataset.id} is {theirs['type']}, {against} takes it as {kind}"
        try:
            if theirs["type"] == "numeric":             # numbers for a boolean or categorical column
                cats = col.get("categories") or []
                if kind == "categorical" and not any(_is_number(c) for c in cats):
                    listed = ", ".join(repr(c) for c in cats[:3]) + (", ..." if len(cats) > 3 else "")
                    raise ValueError(f"no category is a number ({listed})")
                plan.append((j, _values_reader(reader, k, mismatch, as_text=kind == "categorical")))
                continue
            raw = theirs["categories"] if theirs["type"] == "categorical" else [False, True]
            table = reader.values_as_column(k, raw)
        except ValueError as exc:
            raise ValueError(f"{mismatch}: {exc}") from None
        plan.append((j, np.append(table, -1.0 if kind == "categorical" else np.nan).astype(np.float32)))
    return plan


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number_text(v: float) -> str:
    """How a CSV would most plainly write a stored number: ``1234`` for 1234.0, else float32's shortest decimal."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2.0 ** 53 else str(np.float32(v))


def _values_reader(reader: core.Preprocessor, k: int, what: str, as_text: bool = False):
    """A function of a numeric data set column -> model column ``k``'s values, reading each distinct value once;
    ValueError (``what``: the value) for a value it cannot take (e.g. 2 for a boolean column). ``as_text``: each
    number is matched as the text a CSV cell would hold (``_number_text``), as a CSV predict body reads a cell of
    a categorical column: 1234 is the category ``"1234"``, not ``"01234"``, on both paths."""
    def read(col: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(col)
        values, inverse = np.unique(col[ok], return_inverse=True)
        out = np.full(col.shape, np.nan, dtype=np.float32)
        raw = [_number_text(v) for v in values.tolist()] if as_text else values.astype(np.float64).tolist()
        try:
            out[ok] = reader.values_as_column(k, raw)[inverse]
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        return out
    reader.values_as_column(k, [])                      # builds the column's lookups once, here
    return read


def apply_plan(X: np.ndarray, plan: list[tuple[int, object]]) -> np.ndarray:
    """Rows of a stored data set (n, n_features) -> the model's raw input rows float32 (n, len(plan)).

    Raises ValueError when a numeric data set column holds a value its model column cannot take."""
    out = np.empty((X.shape[0], len(plan)), dtype=np.float32)
    for k, (j, table) in enumerate(plan):
        col = np.asarray(X[:, j], dtype=np.float32)
        if table is None:
            out[:, k] = col
            continue
        if callable(table):
            out[:, k] = table(col)
            continue
        ok = ~np.isnan(col)
        codes = col[ok].astype(np.int64)
        codes[(codes < 0) | (codes >= len(table) - 1)] = len(table) - 1
        dest = np.full(col.shape, np.nan, dtype=np.float32)
        dest[ok] = table[codes]
        out[:, k] = dest
    return out
