"""Schemas of /v1/datasets (the upload body is read from the raw stream; these document it and the answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Task = Literal["classification", "regression"]

IRIS_EXAMPLE = {
    "id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1",
    "name": "iris",
    "task": "classification",
    "n_samples": 150,
    "n_features": 4,
    "n_outputs": 1,
    "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "classes": ["setosa", "versicolor", "virginica"],
    "target": "species",
    "size_bytes": 4551,
    "n_dropped": 0,
    "columns": [
        {"name": "sepal_length", "type": "numeric", "missing": 0, "min": 4.3, "max": 7.9, "mean": 5.84, "std": 0.83},
        {"name": "sepal_width", "type": "numeric", "missing": 0, "min": 2.0, "max": 4.4, "mean": 3.06, "std": 0.43},
        {"name": "petal_length", "type": "numeric", "missing": 0, "min": 1.0, "max": 6.9, "mean": 3.76, "std": 1.76},
        {"name": "petal_width", "type": "numeric", "missing": 0, "min": 0.1, "max": 2.5, "mean": 1.2, "std": 0.76},
    ],
    "created_at": "2026-01-01T12:00:00Z",
}
MAX_LISTED_CATEGORIES = 100      # answers list a categorical column's values only up to this many (top always)


# Body of POST /v1/datasets as application/json (documentation only: the body is parsed with orjson straight
# into float32 arrays, never through per-float pydantic validation).
class DatasetJSONBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "xor", "X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": ["no", "yes", "yes", "no"],
         "task": "classification"},
        {"name": "line", "X": [[0.0], [1.0], [2.0]], "y": [0.5, 2.5, 4.5]}]})

    name: str = Field("dataset", description="A label for people.")
    X: list[list[float]] = Field(description="Rows of feature values, all of the same length.")
    y: list[float | str | list[float]] = Field(
        description="One label (number or string) or regression target per row; rows of numbers for "
                    "multi-output regression.")
    task: Task | None = Field(None, description="Default: inferred (see the README's inference rule).")
    feature_names: list[str] | None = Field(None, description="Default x0, x1, ...")


# A stored data set; `classes[i]` is the label of class index i.
class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [IRIS_EXAMPLE]})

    id: str = Field(description="The data set's id.")
    name: str = Field(description="The label given at upload.")
    task: Task = Field(description="classification or regression.")
    n_samples: int = Field(description="Rows.")
    n_features: int = Field(description="Input columns (the target excluded).")
    n_outputs: int = Field(description="1 for classification and single-target regression.")
    feature_names: list[str] = Field(description="Names of the input columns, in order.")
    classes: list[str | int | float | bool] | None = Field(
        description="Labels as uploaded, sorted (strings stay strings); null for regression.")
    target: str | None = Field(description="The CSV target column; null for .npz and JSON uploads.")
    size_bytes: int = Field(description="Bytes counted against the stored-bytes quota: the uploaded file (or JSON "
                                        "body), or the stored arrays when they are larger (a compressed "
                                        "file).")
    n_dropped: int = Field(0, description="Rows dropped for a missing target (drop_missing_target=true).")
    columns: list[dict] | None = Field(
        None, description="Per column of the file except the target, in file order: name, type (numeric, "
                          "categorical, boolean, ignored), missing count; numeric min/max/mean/std; categorical "
                          f"n_categories, top (up to 10 most frequent) and categories (when at most "
                          f"{MAX_LISTED_CATEGORIES}). Null for data sets stored before profiles existed.")
    created_at: datetime = Field(description="When it was uploaded (UTC).")

    @field_validator("n_dropped", mode="before")
    @classmethod
    def _no_null_count(cls, v):
        return v or 0

    @field_validator("columns")
    @classmethod
    def _short_category_lists(cls, v):
        if v is None:
            return v
        return [{k: x for k, x in c.items() if k != "categories"}
                if len(c.get("categories") or ()) > MAX_LISTED_CATEGORIES else c for c in v]


# One page of data sets, newest first.
class DatasetList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [IRIS_EXAMPLE], "total": 1}]})

    items: list[DatasetRead] = Field(description="One page of data sets, newest first.")
    total: int = Field(description="Data sets over all pages.")


UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "A table with a header row / named columns: .csv (delimiter "
                                                "detected among , ; tab |), .csv.gz, .parquet, .arrow / .feather; "
                                                "or an .npz file with arrays X (n, d) and y (n,) or (n, m)."},
                        "name": {"type": "string", "description": "Default: the file name without extension."},
                        "target": {"type": "string", "description": "Target column; default the last one."},
                        "delimiter": {"type": "string", "description": "CSV delimiter (one character, or comma, "
                                                                       "semicolon, tab, pipe); default detected."},
                        "na_values": {"type": "string", "description": "Comma-separated tokens read as missing "
                                                                       "(default: pandas' NA tokens, e.g. empty, "
                                                                       "NA, N/A, n/a, NULL, null, None, NaN, nan, "
                                                                       "#N/A, <NA>, plus ? and -)."},
                        "encoding": {"type": "string", "description": "Text encoding (e.g. cp1252, latin-1); "
                                                                      "UTF-8 (with or without BOM) and UTF-16 with "
                                                                      "BOM are detected."},
                        "decimal": {"type": "string", "description": "Decimal mark of CSV numbers: . or , "
                                                                     "(point, comma); default , for a ;-separated "
                                                                     "file whose numbers are written 2,5, else ."},
                        "thousands": {"type": "string", "description": "Thousands separator of CSV numbers "
                                                                       "(pandas' read_csv(thousands=...)): . , ' or "
                                                                       "space; default . when the decimal mark is , "
                                                                       "and a column's every value is so grouped."},
                        "categorical": {"type": "string", "description": "Comma-separated columns to treat as "
                                                                         "categorical although numeric."},
                        "ignore": {"type": "string", "description": "Comma-separated columns to drop (ids)."},
                        "max_categories": {"type": "integer", "default": 1000,
                                           "description": "Most distinct values a categorical column may have."},
                        "drop_missing_target": {"type": "boolean", "default": False,
                                                "description": "Drop rows whose target is missing (else 422)."},
                        "task": {"type": "string", "enum": ["classification", "regression"],
                                 "description": "Default: inferred (non-numeric or few integer labels -> "
                                                "classification)."},
                    },
                },
            },
            "application/json": {"schema": DatasetJSONBody.model_json_schema()},
        },
    }
}
