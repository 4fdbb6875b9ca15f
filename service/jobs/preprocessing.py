"""A job's preprocessing: the core Preprocessor its params and data set describe, and validation rows in its codes."""

from __future__ import annotations

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


def scoring_plan(model_columns: list[dict], dataset) -> list[tuple[int, np.ndarray | None]]:
    """Per input column of a model (its ``input_schema`` order): the data set's column index with the same name,
    and for categorical columns a table from the data set's codes to the model's (unseen -> -1, last entry for
    out-of-range codes); ValueError naming the first column the data set lacks or holds with another type."""
    have = {c["name"]: (j, c) for j, c in enumerate(columns_of(dataset))}
    plan = []
    for col in model_columns:
        name, kind = str(col["name"]), col["type"]
        if name not in have:
            raise ValueError(f"data set {dataset.id} has no column {name!r}, which the model takes as input "
                             f"(the model's columns: {[str(c['name']) for c in model_columns]})")
        j, theirs = have[name]
        if theirs["type"] != kind:
            raise ValueError(f"column {name!r} of data set {dataset.id} is {theirs['type']}, the model takes it "
                             f"as {kind}")
        table = None
        if kind == "categorical":
            index = {str(c): i for i, c in enumerate(col.get("categories") or [])}
            table = np.array([index.get(c, -1) for c in theirs["categories"]] + [-1], dtype=np.float32)
        plan.append((j, table))
    return plan


def apply_plan(X: np.ndarray, plan: list[tuple[int, np.ndarray | None]]) -> np.ndarray:
    """Rows of a stored data set (n, n_features) -> the model's raw input rows float32 (n, len(plan))."""
    out = np.empty((X.shape[0], len(plan)), dtype=np.float32)
    for k, (j, table) in enumerate(plan):
        col = np.asarray(X[:, j], dtype=np.float32)
        if table is None:
            out[:, k] = col
            continue
        ok = ~np.isnan(col)
        codes = col[ok].astype(np.int64)
        codes[(codes < 0) | (codes >= len(table) - 1)] = len(table) - 1
        dest = np.full(col.shape, np.nan, dtype=np.float32)
        dest[ok] = table[codes]
        out[:, k] = dest
    return out
