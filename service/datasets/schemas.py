"""Schemas of /v1/datasets (the upload body is read from the raw stream; these document it and the answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    "created_at": "2026-01-01T12:00:00Z",
}


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

    id: str
    name: str
    task: Task
    n_samples: int
    n_features: int
    n_outputs: int = Field(description="1 for classification and single-target regression.")
    feature_names: list[str]
    classes: list[str | int | float | bool] | None = Field(
        description="Labels as uploaded, sorted (strings stay strings); null for regression.")
    target: str | None = Field(description="The CSV target column; null for .npz and JSON uploads.")
    size_bytes: int = Field(description="Size of the uploaded file (or JSON body) in bytes.")
    created_at: datetime


# One page of data sets, newest first.
class DatasetList(BaseModel):
    items: list[DatasetRead]
    total: int


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
                                 "description": "A .csv file with a header row (comma-separated, numeric feature "
                                                "columns, a target column with numbers or strings) or an .npz "
                                                "file with arrays X (n, d) and y (n,) or (n, m)."},
                        "name": {"type": "string", "description": "Default: the file name without extension."},
                        "target": {"type": "string", "description": "CSV target column; default the last one."},
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
