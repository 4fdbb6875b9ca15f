"""Request and response bodies of /v1/sweeps: the search space, the strategy, the budget, the ranked trials."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import ACTIVATIONS, MONITORS, OPTIMIZERS

ActivationName = Literal[tuple(a for a in ACTIVATIONS if a not in ("softmax", "linear"))]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(OPTIMIZERS)]  # type: ignore[valid-type]
MetricName = Literal[tuple(MONITORS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# An integer range searched by Optuna (``log``: sampled on a log scale; ``step``: grid spacing).
class IntRange(_Strict):
    low: int = Field(ge=0)
    high: int = Field(ge=0)
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scale range needs low >= 1 and step 1")
        return self


# A float range searched by Optuna (``log``: sampled on a log scale, e.g. learning rates).
class FloatRange(_Strict):
    low: float = Field(ge=0)
    high: float = Field(ge=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


# Each dimension is a fixed value, a list of choices, or a range.
IntDim = Union[int, list[int], IntRange]  # noqa: UP007
FloatDim = Union[float, list[float], FloatRange]  # noqa: UP007


# What the sweep searches: the network (layers, units, activation, dropout) and the training options.
class SearchSpace(_Strict):
    hidden_layers: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2),
                                  description="Number of hidden dense layers.")
    units: IntDim = Field(default_factory=lambda: IntRange(low=16, high=128, log=True),
                          description="Units of each hidden layer (units_1, units_2, ... one per layer; one "
                                      "shared `units` with shared_units or the grid strategy).")
    shared_units: bool = Field(False, description="All hidden layers get the same number of units.")
    activation: ActivationName | list[ActivationName] = "relu"
    dropout: FloatDim = Field(0.0, description="Dropout rate after each hidden layer (0 = none).")
    optimizer: OptimizerName | list[OptimizerName] = "adam"
    learning_rate: FloatDim = Field(default_factory=lambda: FloatRange(low=1e-4, high=1e-1, log=True))
    batch_size: IntDim = 32
    weight_decay: FloatDim = 0.0
    epochs: IntDim = 10


# Body of POST /v1/sweeps.
class SweepCreate(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "dataset_id": "9a1d4e...", "validation_split": 0.2, "strategy": "tpe", "seed": 0,
        "space": {"hidden_layers": {"low": 1, "high": 3}, "units": {"low": 16, "high": 256, "log": True},
                  "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}, "batch_size": [16, 32, 64, 128],
                  "epochs": 20},
        "max_trials": 40, "metric": "val_accuracy", "direction": "maximize", "parallelism": 2,
        "pruner": "median"}]})

    name: str | None = Field(None, max_length=200)
    dataset_id: str
    validation_dataset_id: str | None = None
    validation_split: float | None = Field(None, gt=0, lt=1, description="Default 0.2 without "
                                                                         "validation_dataset_id.")
    space: SearchSpace = Field(default_factory=SearchSpace)
    strategy: Literal["grid", "random", "tpe"] = "tpe"
    seed: int = Field(0, ge=0, le=2**31 - 1, description="The same request proposes the same trials.")
    max_trials: int | None = Field(None, ge=1, le=10_000, description="Trials at most (grid: default its size).")
    max_seconds: float | None = Field(None, gt=0, description="Wall time of the sweep at most; running trials "
                                                              "are cancelled when it passes.")
    metric: MetricName | None = Field(None, description="Default val_accuracy (classification), val_loss "
                                                        "(regression).")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default from the metric.")
    parallelism: int = Field(1, ge=1, le=64, description="Trials running at the same time at most.")
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_startup_trials: int = Field(5, ge=0, description="Median pruner: finished trials before it prunes.")
    pruner_warmup_epochs: int = Field(0, ge=0, description="Median pruner: epochs of a trial before it may be "
                                                           "pruned.")
    standardize: bool = True

    @model_validator(mode="after")
    def _budget(self):
        if self.validation_dataset_id is not None and self.validation_split is not None:
            raise ValueError("give either validation_split or validation_dataset_id, not both")
        if self.max_trials is None and self.max_seconds is None and self.strategy != "grid":
            raise ValueError("give a budget: max_trials and/or max_seconds")
        return self



# One trial as the API shows it; ``rank`` orders finished trials by the metric (1 = best).
class TrialRead(BaseModel):
    number: int
    rank: int | None = None
    status: Literal["pending", "running", "complete", "pruned", "failed", "cancelled"]
    params: dict[str, Any]
    value: float | None = Field(None, description="The metric at the trial's last epoch.")
    epoch: int = Field(description="Epochs reached (for a pruned trial: the epoch it was stopped at).")
    job_id: str | None
    network_id: str | None
    model_id: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, t, rank: int | None = None) -> "TrialRead":
        """Build from a sweeps.tables.SweepTrial row."""
        return cls(number=t.number, rank=rank, status=t.status, params=t.params, value=t.value, epoch=t.epoch,
                   job_id=t.job_id, network_id=t.network_id, model_id=t.model_id, error=t.error,
                   created_at=t.created_at, finished_at=t.finished_at)


# A sweep as the API shows it: status, counts, best trial, trials ranked by the metric, importances.
class SweepRead(BaseModel):
    id: str
    name: str | None
    status: Literal["running", "succeeded", "failed", "cancelled"]
    reason: str | None
    strategy: str
    metric: str
    direction: str
    parallelism: int
    max_trials: int | None
    max_seconds: float | None
    counts: dict[str, int] = Field(description="Trials per status.")
    best_trial: int | None
    best_value: float | None
    best_model_id: str | None
    importances: dict[str, float] | None = Field(None, description="Optuna's parameter importances (>= 2 "
                                                                   "complete trials).")
    trials: list[TrialRead] = Field(default_factory=list, description="Ranked: best first.")
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


# A page of sweeps (without their trials).
class SweepList(BaseModel):
    items: list[SweepRead]
    total: int
