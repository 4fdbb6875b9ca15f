"""Schemas of /v1/models; the predict body is parsed with orjson straight into float32 (documented here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_EXAMPLE = {
    "id": "5d41402abc4b2a76b9719d911017c592",
    "job_id": "7b8b965ad4bca0e41ab51de7b31363a1",
    "network_id": "3f0c9a1e8b7d4c2a9e6f5d4c3b2a1908",
    "dataset_id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1",
    "task": "classification",
    "classes": ["setosa", "versicolor", "virginica"],
    "input_dim": 4,
    "output_dim": 3,
    "metrics": {"epoch": 28, "train_loss": 0.08, "val_loss": 0.11, "train_accuracy": 0.98,
                "val_accuracy": 0.97, "best_epoch": 28,
                "last_epoch_metrics": {"epoch": 30, "train_loss": 0.07, "val_loss": 0.12, "train_accuracy": 0.98,
                                       "val_accuracy": 0.96}},
    "created_at": "2026-01-01T12:05:00Z",
}


# A trained model (one per succeeded job).
class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [MODEL_EXAMPLE]})

    id: str = Field(description="The model's id.")
    job_id: str | None = Field(description="The job that trained it.")
    network_id: str | None = Field(description="Its network.")
    dataset_id: str | None = Field(description="Its training data set.")
    task: Literal["classification", "regression"] = Field(description="classification or regression.")
    classes: list[str | int | float | bool] | None = Field(
        description="Label of class index i (labels as uploaded); null for regression.")
    input_dim: int = Field(description="Values per row that predict expects.")
    output_dim: int = Field(description="Output units (classes, or regression outputs).")
    metrics: dict[str, Any] = Field(
        description="The metrics of the weights served: with early stopping's best-weights restore, the best "
                    "epoch's (with best_epoch, and the last epoch's as last_epoch_metrics); else the last epoch's. "
                    "With cross_validation, also cross_validation: the fold models' held-out metrics (as the job's).")
    created_at: datetime = Field(description="When training finished (UTC).")
    input_schema: list[dict[str, Any]] | None = Field(
        None, description="Per input column, in order: name, type, categories, how a missing value is filled "
                          "(missing), scaling, how an unseen category is encoded; in GET /v1/models/{id} only.")


# One page of models, newest first.
class ModelList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [MODEL_EXAMPLE], "total": 1}]})

    items: list[ModelRead] = Field(description="One page of models, newest first.")
    total: int = Field(description="Models over all pages.")


# Body of POST /v1/models/{id}/predict (documentation only: parsed with orjson into float32 directly).
# Exactly one shape: inputs, records, or columns + data.
class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        {"records": [{"age": 41, "plan": "pro", "region": None}]},
        {"columns": ["plan", "age"], "data": [["pro", 41], ["basic", None]]}]})

    inputs: list[list[float]] | None = Field(
        None, description="Rows of input_dim numbers each, in the trained column order (numeric-only models; "
                          "the preprocessing learned in training is applied for you).")
    records: list[dict[str, Any]] | None = Field(
        None, description="One object per row, values by column name in any order; null or a left-out "
                          "column is a missing value (filled as trained); an unseen category is encoded as "
                          "trained (all zeros or the 'other' slot).")
    columns: list[str] | None = Field(None, description="Column names of `data` (pandas' split orientation).")
    data: list[list[Any]] | None = Field(None, description="Rows of values in the order of `columns`.")


# Answer of predict: labels as uploaded (strings stay strings); probabilities for classification only.
class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"predictions": ["setosa", "virginica"], "probabilities": [[0.97, 0.02, 0.01], [0.0, 0.08, 0.92]]},
        {"predictions": [151.2, 87.9]}]})

    predictions: list[Any] = Field(description="One label (classification) or value / list of values "
                                               "(regression) per input row.")
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, the probability of each class in the order of `classes`.")


PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()},
                    **{media: {"schema": {"type": "string", "format": "binary", "description": what}}
                       for media, what in (
                           ("application/x-npy", "A 2-D numeric array (n, input_dim) saved by np.save."),
                           ("application/vnd.apache.arrow.stream", "An Arrow IPC stream: input_dim numeric "
                            "columns, or one fixed-size-list column."),
                           ("application/vnd.apache.parquet", "A Parquet file, columns as for Arrow."),
                           ("text/csv", "A header line, then input_dim numeric columns."))}},
    }
}

# Answers of predict besides JSON, chosen by the Accept header.
PREDICT_BINARY_ANSWERS = {
    "application/x-npy": {"schema": {"type": "string", "format": "binary", "description": (
        "Classification: the probabilities, float32 (n, n_classes); regression: the values, float32.")}},
    "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary", "description": (
        "One record batch: `prediction` and, for classification, `probabilities` (fixed-size list).")}},
}


# Answer of /invocations (MLflow's shape): one label or value per row.
class InvocationsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"predictions": ["setosa", "virginica"]}]})

    predictions: list[Any] = Field(description="One label (classification) or value (regression) per row.")


INVOCATIONS_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "Exactly one of dataframe_split, dataframe_records, "
                                                            "instances, inputs; optionally params (unused)."},
                "examples": {
                    "dataframe_split": {"value": {"dataframe_split": {
                        "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                        "data": [[5.1, 3.5, 1.4, 0.2]]}}},
                    "dataframe_records": {"value": {"dataframe_records": [
                        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}},
                    "instances": {"value": {"instances": [[5.1, 3.5, 1.4, 0.2]]}},
                    "inputs": {"value": {"inputs": [[5.1, 3.5, 1.4, 0.2]]}},
                }},
            "text/csv": {"schema": {"type": "string"},
                         "example": "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"},
        },
    }
}
