"""Request and response bodies of /v1/sweeps: the search space, the strategy, the budget, the ranked trials."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictBool, Tag, create_model,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from core import ACTIVATIONS, MONITORS, OPTIMIZERS
from service.jobs.schemas import DEFAULTS as JOB_DEFAULTS
from service.jobs.schemas import JobCreate

ActivationName = Literal[tuple(a for a in ACTIVATIONS if a not in ("softmax", "linear"))]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(OPTIMIZERS)]  # type: ignore[valid-type]
MetricName = Literal[tuple(MONITORS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _number(value: Any) -> Any:
    """JSON ``true``/``false`` or a string where a number is expected is a mistake (pydantic would read ``true``
    as 1 and ``"10"`` as 10)."""
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number: got {value}",
                                  {"value": str(value).lower()})
    if isinstance(value, str):
        raise PydanticCustomError("string_not_number", "a string is not a number: got {value}",
                                  {"value": repr(value)[:60]})
    return value


# Numbers of the body, JSON booleans and strings refused (a top-level max_seconds: true became a 1-second budget).
NumberInt = Annotated[int, BeforeValidator(_number)]
NumberFloat = Annotated[float, BeforeValidator(_number)]
# Every searched quantity is >= 0 (units, layers, rates, sizes); a negative value would not fail a trial, it would
# silently train something else (no dropout layer for dropout -0.1, no hidden layer for hidden_layers -1).
Int = Annotated[NumberInt, Field(ge=0)]
Float = Annotated[NumberFloat, Field(ge=0)]


# An integer range searched by Optuna (``log``: sampled on a log scale; ``step``: grid spacing).
class IntRange(_Strict):
    low: Int = Field(description="Smallest value.")
    high: Int = Field(description="Largest value (included).")
    log: StrictBool = Field(False, description="Sample on a log scale.")
    step: Int = Field(1, ge=1, description="Spacing of the values (low, low + step, ... up to high).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scale range needs low >= 1 and step 1")
        return self


# A float range searched by Optuna (``log``: sampled on a log scale, e.g. learning rates; ``step``: only the values
# low, low + step, ... up to high, as Optuna's FloatDistribution(step=...), which a grid can also enumerate).
class FloatRange(_Strict):
    low: Float = Field(description="Smallest value.")
    high: Float = Field(description="Largest value.")
    log: StrictBool = Field(False, description="Sample on a log scale (learning rates, weight decay).")
    step: Float | None = Field(None, gt=0, description="Spacing of the values (low, low + step, ... up to high); "
                                                       "not with log.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log-scale range cannot have a step (Optuna samples either on a log scale or on "
                             "steps)")
        return self

    def count(self) -> int:
        """How many values a stepped range holds (low, low + step, ... <= high)."""
        return int(np.floor((self.high - self.low) / self.step * (1 + 1e-12))) + 1

    def value(self, i: int) -> float:
        """Value ``i`` of a stepped range (rounded to 12 significant digits: 0.1 + 2 * 0.1 is 0.3 here)."""
        return float(f"{self.low + i * self.step:.12g}")

    def top(self) -> float:
        """The largest value a trial can draw: ``high``, or the last step at or below it."""
        return self.high if self.step is None else self.value(self.count() - 1)


# Each dimension is a fixed value, a list of choices, or a range.
def _shape(value: Any) -> str:
    """Which form of a dimension the input is, so that a bad range is reported as a range only (not also as
    'not an integer' and 'not a list', pydantic's way with a plain union)."""
    if isinstance(value, (dict, BaseModel)):
        return "range"
    return "choices" if isinstance(value, list) else "value"


IntDim = Annotated[Union[Annotated[Int, Tag("value")], Annotated[list[Int], Tag("choices")],  # noqa: UP007
                         Annotated[IntRange, Tag("range")]], Discriminator(_shape)]
# clip_norm: null (no clipping) is a value and may be one of the choices
ClipDim = Annotated[Union[Annotated[Float, Tag("value")], Annotated[list[Optional[Float]], Tag("choices")],  # noqa: UP007
                          Annotated[FloatRange, Tag("range")]], Discriminator(_shape)]
FloatDim = Annotated[Union[Annotated[Float, Tag("value")], Annotated[list[Float], Tag("choices")],  # noqa: UP007
                           Annotated[FloatRange, Tag("range")]], Discriminator(_shape)]


# What the sweep searches: the network (layers, units, activation, dropout) and the training options.
class SearchSpace(_Strict):
    hidden_layers: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2),
                                  description="Number of hidden dense layers.")
    units: IntDim = Field(default_factory=lambda: IntRange(low=16, high=128, log=True),
                          description="Units of each hidden layer (units_1, units_2, ... one per layer; one "
                                      "shared `units` with shared_units or the grid strategy).")
    shared_units: StrictBool = Field(False, description="All hidden layers get the same number of units.")
    activation: ActivationName | list[ActivationName] = Field("relu", description="Hidden activation, or a list "
                                                                              "of choices.")
    dropout: FloatDim = Field(0.0, description="Dropout rate after each hidden layer (0 = none).")
    optimizer: OptimizerName | list[OptimizerName] = Field("adam", description="Optimizer, or a list of choices.")
    learning_rate: FloatDim = Field(default_factory=lambda: FloatRange(low=1e-4, high=1e-1, log=True),
                                    description="Step size (default a log range 1e-4..1e-1).")
    batch_size: IntDim = Field(32, description="Rows per minibatch.")
    weight_decay: FloatDim = Field(0.0, description="L2 penalty.")
    l1: FloatDim = Field(0.0, description="L1 penalty (as the job's l1).")
    clip_norm: ClipDim | None = Field(None, description="Clip each minibatch gradient's global L2 norm to this "
                                      "(as the job's clip_norm); null: no clipping, also as one of a list's "
                                      "choices ([null, 1.0]).")
    epochs: IntDim = Field(10, description="Passes over the data of each trial (the pruner may stop it sooner).")

    @model_validator(mode="before")
    @classmethod
    def _ranges_ordered(cls, data: Any) -> Any:
        """A range with high < low is one error naming ``space.<dimension>`` (checked before the range's own
        validation, which cannot know the dimension's name)."""
        if isinstance(data, dict):
            for name, dim in data.items():
                numbers = all(isinstance(dim.get(k), (int, float)) and not isinstance(dim.get(k), bool)
                              for k in ("low", "high")) if isinstance(dim, dict) else False
                if numbers and dim["high"] < dim["low"]:
                    raise PydanticCustomError("range_order", "space.{name}: high ({high}) must be >= low ({low})",
                                              {"name": name, "high": dim["high"], "low": dim["low"]})
        return data


# What a grid uses for the dimensions the request leaves out whose default is a log range: fixed values (64 units,
# the job's default learning rate). The other defaults are fixed values already, or hidden_layers' range 1..2.
GRID_DEFAULTS: dict[str, Any] = {"units": 64, "learning_rate": JOB_DEFAULTS["optimizer"]["learning_rate"]}


# Body of POST /v1/sweeps.
# Options of POST /v1/jobs a sweep fixes for every trial (the space searches the others): the jobs' own fields,
# so their validation, defaults and documentation are the jobs'.
TRAINING_FIELDS = ("lr_schedule", "class_weight", "sample_weight_column", "early_stopping", "output_bias",
                   "preprocessing")
SweepTraining = create_model("SweepTraining", __base__=_Strict, __doc__="Job options every trial trains with.",
                             **{n: (JobCreate.model_fields[n].annotation, JobCreate.model_fields[n])
                                for n in TRAINING_FIELDS})


class SweepCreate(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "dataset_id": "9a1d4e...", "validation_split": 0.2, "strategy": "tpe", "seed": 0,
        "space": {"hidden_layers": {"low": 1, "high": 3}, "units": {"low": 16, "high": 256, "log": True},
                  "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": [16, 32, 64, 128],
                  "epochs": 20},
        "max_trials": 40, "metric": "val_accuracy", "direction": "maximize", "parallelism": 2,
        "pruner": "median"}]})

    name: str | None = Field(None, max_length=200, description="A label for the sweep.")
    dataset_id: str = Field(description="The training data set.")
    validation_dataset_id: str | None = Field(None, description="A separate validation data set.")
    validation_split: NumberFloat | None = Field(None, ge=0, lt=1, description="Fraction of the rows held out for "
                                           "validation (0: none, as in POST /v1/jobs); default 0.2 without "
                                           "validation_dataset_id.")
    space: SearchSpace = Field(default_factory=SearchSpace, description="What is searched.")
    strategy: Literal["grid", "random", "tpe"] = Field("tpe", description="Optuna's GridSampler, RandomSampler or "
                                                                         "TPESampler (Bayesian).")
    seed: NumberInt = Field(0, ge=0, le=2**31 - 1, description="The same request proposes the same trials.")
    max_trials: NumberInt | None = Field(None, ge=1, le=10_000, description="Trials at most (grid: default its "
                                                                             "size).")
    max_seconds: NumberFloat | None = Field(None, gt=0, description="Wall time of the sweep at most; running "
                                                                      "trials are cancelled when it passes.")
    metric: MetricName | None = Field(None, description="Default val_accuracy (classification), val_loss "
                                                        "(regression).")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default from the metric.")
    parallelism: NumberInt = Field(1, ge=1, le=64, description="Trials running at the same time at most.")
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="Optuna's MedianPruner or "
                                                                                "HyperbandPruner, fed each epoch.")
    pruner_startup_trials: NumberInt = Field(5, ge=0, description="Median pruner: finished trials before it "
                                                                    "prunes.")
    pruner_warmup_epochs: NumberInt = Field(0, ge=0, description="Median pruner: epochs of a trial before it may "
                                                                   "be pruned.")
    standardize: StrictBool = Field(True, description="Standardize numeric columns (as in POST /v1/jobs).")
    training: SweepTraining | None = Field(None, description="Job options every trial trains with, as in POST "
                                           "/v1/jobs: " + ", ".join(TRAINING_FIELDS) + ".")

    @field_validator("training", mode="before")
    @classmethod
    def _training_fields_elsewhere(cls, training: Any) -> Any:
        """A job field given in ``training`` that the space searches (epochs, optimizer, ...) or that the sweep
        body has itself (seed, validation_split, ...) is a 422 saying where it goes, not "Extra inputs"."""
        if isinstance(training, dict):
            if "preprocessing" in training and training["preprocessing"] is None:  # null: the default, as for a job
                training = {k: v for k, v in training.items() if k != "preprocessing"}
            for key in training:
                if key in SearchSpace.model_fields or key == "learning_rate":
                    where = "space.optimizer and space.learning_rate" if key == "optimizer" else f"space.{key}"
                    raise PydanticCustomError(
                        "training_field_in_space", "{key} is set in {where} (a fixed value or the values to "
                        "search), not in training", {"key": key, "where": where})
                if key in cls.model_fields and key != "training":
                    raise PydanticCustomError(
                        "training_field_of_sweep", "{key} is a field of the sweep body itself (next to space and "
                        "training), not of training", {"key": key})
        return training

    @model_validator(mode="after")
    def _budget(self):
        if self.validation_dataset_id is not None and self.validation_split:
            raise ValueError("give either validation_split or validation_dataset_id, not both")
        if self.max_trials is None and self.max_seconds is None and self.strategy != "grid":
            raise ValueError("give a budget: max_trials and/or max_seconds")
        return self

    @model_validator(mode="after")
    def _grid_defaults(self):
        """A grid enumerates lists and integer ranges: the default ranges it cannot (``units``, ``learning_rate``:
        log ranges) become fixed values when the request does not give the dimension."""
        if self.strategy == "grid":
            for name, value in GRID_DEFAULTS.items():
                if name not in self.space.model_fields_set:
                    setattr(self.space, name, value)
        return self



SWEEP_EXAMPLE = {
    "id": "5e1c0a9b7d6f4e3a2b1c0d9e8f7a6b5c", "name": "digits", "status": "succeeded",
    "reason": "max_trials=2 reached", "strategy": "tpe", "metric": "val_accuracy", "direction": "maximize",
    "parallelism": 2, "max_trials": 2, "max_seconds": None, "counts": {"complete": 1, "pruned": 1},
    "best_trial": 0, "best_value": 0.96, "best_model_id": "d1da0a60d09c44c98bd7a7475d4094cd",
    "importances": None,
    "trials": [{"number": 0, "rank": 1, "status": "complete", "params": {"hidden_layers": 1, "units_1": 64,
                "learning_rate": 0.01}, "value": 0.96, "epoch": 10, "job_id": "7b8b965ad4bca0e41ab51de7b31363a1",
                "job_status": "succeeded", "job_epoch": 10,
                "network_id": "3f0c9a1e8b7d4c2a9e6f5d4c3b2a1908", "model_id": "d1da0a60d09c44c98bd7a7475d4094cd",
                "error": None, "created_at": "2026-11-30T17:00:00Z", "finished_at": "2026-11-30T17:00:02Z"}],
    "request": {"dataset_id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1", "strategy": "tpe", "max_trials": 2},
    "created_at": "2026-11-30T17:00:00Z", "updated_at": "2026-11-30T17:00:04Z",
    "finished_at": "2026-11-30T17:00:04Z"}


# One trial as the API shows it; ``rank`` orders finished trials by the metric (1 = best).
class TrialRead(BaseModel):
    number: int = Field(description="Optuna's trial number (0, 1, ...).")
    rank: int | None = Field(None, description="1 = best complete trial; None unless complete.")
    status: Literal["pending", "running", "complete", "pruned", "failed", "cancelled"] = Field(
        description="pending (no job yet), running (job queued or running), complete, pruned, failed, cancelled.")
    params: dict[str, Any] = Field(description="The trial's hyper-parameters.")
    value: float | None = Field(None, description="The metric at the trial's last epoch.")
    epoch: int = Field(description="Epochs reached (for a pruned trial: the epoch it was stopped at).")
    job_id: str | None = Field(description="The trial's training job.")
    job_status: str | None = Field(None, description="Its job's status (queued, running, succeeded, failed, "
                                   "cancelled). A pruned trial's job may have succeeded: the verdict, judged from "
                                   "the stored epochs, can reach the worker after a small trial's last epoch.")
    job_epoch: int | None = Field(None, description="Epochs its job trained (for a pruned trial, often more than "
                                  "`epoch`, the epoch it was judged at).")
    network_id: str | None = Field(description="The trial's network.")
    model_id: str | None = Field(description="The trained model of a complete trial (null once deleted: the trial "
                                 "keeps its rank and value, and its error names the deleted model).")
    error: str | None = Field(description="Why it was pruned, failed or could not start; for a pending trial, what "
                              "it waits for (the job quota).")
    created_at: datetime = Field(description="When Optuna proposed it.")
    finished_at: datetime | None = Field(description="When it ended.")

    @classmethod
    def from_row(cls, t, rank: int | None = None, job=None, *, model_deleted: bool = False) -> "TrialRead":
        """Build from a sweeps.tables.SweepTrial row and its job's (status, epoch) when known; a model deleted since
        the sweep ended is null, and the error says so."""
        return cls(number=t.number, rank=rank, status=t.status, params=t.params, value=t.value, epoch=t.epoch,
                   job_id=t.job_id, job_status=job[0] if job else None, job_epoch=job[1] if job else None,
                   network_id=t.network_id, model_id=None if model_deleted else t.model_id,
                   error=f"its model {t.model_id} was deleted" if model_deleted else t.error,
                   created_at=t.created_at, finished_at=t.finished_at)


# A sweep as the API shows it: status, counts, best trial, trials ranked by the metric, importances.
class SweepRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SWEEP_EXAMPLE]})

    id: str = Field(description="The sweep's id.")
    name: str | None = Field(description="Its label.")
    status: Literal["running", "succeeded", "failed", "cancelled"] = Field(description="running until the budget "
                                                                                     "is spent or it is cancelled.")
    reason: str | None = Field(description="Why it ended.")
    strategy: str = Field(description="grid, random or tpe.")
    metric: str = Field(description="The metric optimised.")
    direction: str = Field(description="minimize or maximize.")
    parallelism: int = Field(description="Trials running at the same time at most.")
    max_trials: int | None = Field(description="Trial budget.")
    max_seconds: float | None = Field(description="Time budget.")
    counts: dict[str, int] = Field(description="Trials per status.")
    best_trial: int | None = Field(description="Number of the best complete trial.")
    best_value: float | None = Field(description="Its metric.")
    best_model_id: str | None = Field(description="Its trained model (predict with it); null if that model was "
                                      "deleted (a model cannot be deleted while its sweep runs).")
    importances: dict[str, float] | None = Field(None, description="Optuna's parameter importances (>= 2 "
                                                                   "complete trials).")
    trials: list[TrialRead] = Field(default_factory=list, description="Ranked: best first.")
    request: dict[str, Any] = Field(description="The request with defaults filled in.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="Last change of its best trial or importances.")
    finished_at: datetime | None = Field(description="When it ended.")


# A page of sweeps (without their trials).
class SweepList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [SWEEP_EXAMPLE], "total": 1}]})

    items: list[SweepRead] = Field(description="This page.")
    total: int = Field(description="Sweeps in all.")
