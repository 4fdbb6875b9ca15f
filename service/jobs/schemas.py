"""Request and response bodies of /v1/jobs."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from core import ENCODERS, MONITORS, OPTIMIZERS, SCALERS
from core.preprocessing import FLOAT32_MAX
from core.schedules import SCHEDULES


MAX_FOLDS = 20  # cross_validation.folds at most (each fold is a full training run)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Plain or momentum SGD (Nesterov optional).
class SGDOptimizer(_Strict):
    type: Literal["sgd"] = Field("sgd", description="Optimizer: sgd (plain, momentum or Nesterov).")
    learning_rate: float = Field(0.01, gt=0, description="Step size.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Velocity decay in [0, 1); 0 is plain SGD.")
    nesterov: bool = Field(False, description="Nesterov's look-ahead momentum (needs momentum > 0).")


# Adam with bias correction.
class AdamOptimizer(_Strict):
    type: Literal["adam"] = Field("adam", description="Optimizer: adam (with bias correction).")
    learning_rate: float = Field(0.001, gt=0, description="Step size.")
    beta1: float = Field(0.9, ge=0, lt=1, description="Decay of the first-moment estimate.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Decay of the second-moment estimate.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


# AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's AdamW.
class AdamWOptimizer(AdamOptimizer):
    type: Literal["adamw"] = Field("adamw", description="Optimizer: adamw (Adam with decoupled weight decay).")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled decay: each step multiplies the weights by "
                                                        "1 - learning_rate * weight_decay (PyTorch's default 0.01).")


# RMSprop (Keras' defaults; optional momentum as PyTorch's).
class RMSpropOptimizer(_Strict):
    type: Literal["rmsprop"] = Field("rmsprop", description="Optimizer: rmsprop.")
    learning_rate: float = Field(0.001, gt=0, description="Step size.")
    rho: float = Field(0.9, ge=0, lt=1, description="Decay of the running mean of squared gradients.")
    eps: float = Field(1e-7, gt=0, description="Added to the root mean square.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum on the scaled step (0: none).")


# One schema per engine optimizer: the discriminator's choices are core.OPTIMIZERS' keys.
_OPTIMIZER_SCHEMAS = {"sgd": SGDOptimizer, "adam": AdamOptimizer, "adamw": AdamWOptimizer,
                      "rmsprop": RMSpropOptimizer}
if set(_OPTIMIZER_SCHEMAS) != set(OPTIMIZERS):
    raise RuntimeError(f"optimizer schemas {sorted(_OPTIMIZER_SCHEMAS)} do not match core.OPTIMIZERS "
                       f"{sorted(OPTIMIZERS)}")
OptimizerSpec = Annotated[Union[tuple(_OPTIMIZER_SCHEMAS[k] for k in OPTIMIZERS)],  # noqa: UP007
                          Field(discriminator="type")]

# Metrics early stopping can watch: core.MONITORS' keys (which ones suit a task is checked by jobs.service).
Monitor = Literal[tuple(MONITORS)]  # type: ignore[valid-type]


# Stop when the monitored metric has not improved by min_delta for `patience` epochs; keeps the best weights.
class EarlyStopping(_Strict):
    monitor: Monitor = Field("val_loss", description="The metric to watch (val_* needs validation data).")
    patience: int = Field(5, ge=1, description="Epochs without improvement before training stops.")
    min_delta: float = Field(0.0, ge=0, description="The smallest change that counts as an improvement.")


# Linear warm-up shared by the epoch-indexed schedules.
class _Warmup(_Strict):
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear warm-up (epoch e <= w runs at "
                                                    "learning_rate * e / (w + 1)) before the schedule starts.")


# lr = learning_rate * gamma ** (k // step_size) in the schedule's k-th epoch from 0 (PyTorch's StepLR).
class StepSchedule(_Warmup):
    type: Literal["step"] = Field(description="Schedule type.")
    step_size: int = Field(10, ge=1, description="Epochs between two decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="Factor of each decay.")


# lr = learning_rate * gamma ** k in the schedule's k-th epoch from 0 (PyTorch's ExponentialLR).
class ExponentialSchedule(_Warmup):
    type: Literal["exponential"] = Field(description="Schedule type.")
    gamma: float = Field(0.95, gt=0, le=1, description="Factor per epoch.")


# Cosine annealing from learning_rate to min_lr over t_max epochs (PyTorch's CosineAnnealingLR).
class CosineSchedule(_Warmup):
    type: Literal["cosine"] = Field(description="Schedule type.")
    t_max: int | None = Field(None, ge=1, description="Period in epochs; default the epochs after warm-up.")
    min_lr: float = Field(0.0, ge=0, description="The rate at the end of the period.")


# Multiply the rate by `factor` when `monitor` has not improved for `patience` epochs (Keras' ReduceLROnPlateau).
class ReduceOnPlateauSchedule(_Strict):
    type: Literal["reduce_on_plateau"] = Field(description="Schedule type.")
    monitor: Monitor = Field("val_loss", description="The metric watched (as early_stopping.monitor).")
    factor: float = Field(0.1, gt=0, lt=1, description="Factor applied at each plateau.")
    patience: int = Field(10, ge=1, description="Epochs without improvement before a reduction.")
    min_lr: float = Field(0.0, ge=0, description="The rate never goes below this.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


# One schema per schedule: the discriminator's choices are core.schedules.SCHEDULES' keys.
_SCHEDULE_SCHEMAS = {"step": StepSchedule, "exponential": ExponentialSchedule, "cosine": CosineSchedule,
                     "reduce_on_plateau": ReduceOnPlateauSchedule}
if set(_SCHEDULE_SCHEMAS) != set(SCHEDULES):
    raise RuntimeError(f"schedule schemas {sorted(_SCHEDULE_SCHEMAS)} do not match core SCHEDULES {sorted(SCHEDULES)}")
ScheduleSpec = Annotated[Union[tuple(_SCHEDULE_SCHEMAS[k] for k in SCHEDULES)],  # noqa: UP007
                         Field(discriminator="type")]


# The API's choices are core's table keys (most_frequent is kept for boolean columns).
ImputeStrategy = Literal["mean", "median", "constant"]
ScaleMethod = Literal[tuple(SCALERS)]  # type: ignore[valid-type]
EncodeMethod = Literal[tuple(ENCODERS)]  # type: ignore[valid-type]


# How numeric columns are prepared; every statistic comes from the training rows only.
class NumericPreprocessing(_Strict):
    impute: ImputeStrategy = Field("mean", description="How a missing value is filled (scikit-learn's "
                                                       "SimpleImputer strategy).")
    fill_value: float | None = Field(None, description="The value for impute=constant (default 0).")
    add_indicator: bool = Field(False, description="Add a 0/1 column per numeric column that had missing "
                                                   "values in training.")
    scale: ScaleMethod | None = Field(None, description="standard (default unless standardize is false), "
                                                        "minmax or none.")

    @field_validator("fill_value")
    @classmethod
    def _fill_value_in_float32(cls, v: float | None) -> float | None:
        """The network computes in float32: a fill value beyond its range would be infinite there."""
        if v is not None and not abs(v) <= FLOAT32_MAX:
            raise ValueError(f"must be a finite number within float32's range (about 3.4e38), got {v!r}")
        return v


# How categorical columns are encoded.
class CategoricalPreprocessing(_Strict):
    encode: EncodeMethod = Field("onehot", description="How a categorical column becomes numbers (onehot).")
    max_categories: int | None = Field(None, ge=1, description="Output columns per categorical column at "
                                                               "most, the shared 'other' slot included.")


# Preprocessing learned from the training rows and stored with the model (predict applies it).
class Preprocessing(_Strict):
    numeric: NumericPreprocessing = Field(default_factory=NumericPreprocessing,
                                          description="Imputation and scaling of numeric columns.")
    categorical: CategoricalPreprocessing = Field(default_factory=CategoricalPreprocessing,
                                                  description="Encoding of categorical columns.")


# k-fold cross-validation before the final model (H2O's nfolds): k models, each scored on the fold it never saw.
class CrossValidation(_Strict):
    folds: int = Field(5, ge=2, le=MAX_FOLDS, description=f"Number of folds k (2..{MAX_FOLDS}, at most the rows, and "
                                                          "for classification at most the smallest class's rows: "
                                                          "folds are stratified).")


# What a job gets for the fields it leaves out, where they differ from the engine's own defaults: tuned so that a
# job with only network_id and dataset_id does at least as well as scikit-learn's MLPClassifier / MLPRegressor with
# theirs (digits, wine, breast cancer, diabetes, MNIST 8k/2k: tests/core/test_job_defaults.py, bench/defaults.py).
DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 64, "optimizer": {"type": "adam", "learning_rate": 0.002},
                            "weight_decay": 0.001, "lr_schedule": {"type": "cosine"}, "output_bias": "target_mean"}


# The training options of a job (stored with the job, passed to core.fit).
class TrainingParams(_Strict):
    validation_split: float = Field(0.0, ge=0, lt=1, description="Fraction of rows held out for validation.")
    validation_dataset_id: str | None = Field(None, description="A separate validation data set instead.")
    epochs: int = Field(DEFAULTS["epochs"], ge=1, description="Passes over the data (at most MLP_MAX_EPOCHS).")
    batch_size: int = Field(DEFAULTS["batch_size"], ge=1, description="Rows per minibatch (at most "
                                                                       "MLP_MAX_BATCH_SIZE).")
    optimizer: OptimizerSpec = Field(default_factory=lambda: AdamOptimizer(**DEFAULTS["optimizer"]),
                                     description="sgd, adam, adamw or rmsprop with their settings (default adam "
                                                 "with learning_rate 0.002; an adam without learning_rate gets "
                                                 "0.001).")
    weight_decay: float = Field(DEFAULTS["weight_decay"], ge=0, description="L2 penalty (default 0.001; 0 when the "
                                                                             "optimizer is adamw, which decays the "
                                                                             "weights itself).")
    l1: float = Field(0.0, ge=0, description="L1 penalty (l1 * sign(w) added to the gradient).")
    lr_schedule: ScheduleSpec | None = Field(
        default_factory=lambda: CosineSchedule(**DEFAULTS["lr_schedule"]),
        validation_alias=AliasChoices("lr_schedule", "schedule"),
        description="Learning-rate schedule (also accepted as `schedule`; default cosine annealing over the epochs, "
                    "null keeps the rate constant); each epoch's `lr` is in its metrics.")
    clip_norm: float | None = Field(None, gt=0, description="Clip the gradients to this global L2 norm.")
    class_weight: Literal["balanced"] | dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, description="'balanced' (n_samples / (n_classes * count), as scikit-learn) or a map from label as "
                          "uploaded to weight (others 1); classification only.")
    sample_weight_column: str | None = Field(None, description="A numeric column of the data set holding each "
                                                               "row's loss weight; it is not a feature.")
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop when the monitored metric stalls; null trains every epoch.")
    output_bias: Literal["target_mean", "zeros"] = Field(
        DEFAULTS["output_bias"], description="Regression: start a linear output layer's bias at the training "
                                             "targets' mean (target_mean) or at 0 (zeros).")
    standardize: bool = Field(True, description="Short for preprocessing.numeric.scale: true = standard, "
                                                "false = none.")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing,
                                         description="Imputation, scaling and one-hot encoding, learned from "
                                                     "the training rows; predict applies them.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Same seed and data give the same metrics.")
    cross_validation: CrossValidation | None = Field(
        None, description="Train k fold models first and report their held-out metrics (per fold, mean and std) "
                          "on the job and model; the final model is then trained as without it.")

    @model_validator(mode="before")
    @classmethod
    def _one_schedule_name(cls, data):
        """``schedule`` is another name for ``lr_schedule``: both in one body is a 422 that says so."""
        if isinstance(data, dict) and "lr_schedule" in data and "schedule" in data:
            raise ValueError("lr_schedule: give lr_schedule or its alias schedule, not both")
        return data

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data):
        """``optimizer`` and ``preprocessing`` given as null get their defaults (null has no other meaning there,
        unlike ``lr_schedule`` or ``early_stopping``, where null turns the feature off)."""
        if isinstance(data, dict) and any(data.get(k, ...) is None for k in ("optimizer", "preprocessing")):
            data = {k: v for k, v in data.items() if not (k in ("optimizer", "preprocessing") and v is None)}
        return data

    @model_validator(mode="after")
    def _standardize_is_scale(self):
        """``standardize`` maps onto ``preprocessing.numeric.scale``; contradicting values are a 422. AdamW's
        default weight_decay is its own decoupled one (no L2 on top unless asked for)."""
        if self.optimizer.type == "adamw" and "weight_decay" not in self.model_fields_set:
            self.weight_decay = 0.0
        numeric = self.preprocessing.numeric
        if numeric.fill_value is not None and numeric.impute != "constant":
            raise ValueError(f"preprocessing.numeric.fill_value is only used with impute='constant', "
                             f"not {numeric.impute!r}")
        if numeric.scale is None:
            numeric.scale = "standard" if self.standardize else "none"
        elif "standardize" in self.model_fields_set and self.standardize != (numeric.scale != "none"):
            raise ValueError(f"standardize={str(self.standardize).lower()} contradicts "
                             f"preprocessing.numeric.scale={numeric.scale!r}; give only one of them")
        self.standardize = numeric.scale != "none"
        min_lr = getattr(self.lr_schedule, "min_lr", 0.0)
        if min_lr > self.optimizer.learning_rate:
            raise ValueError(f"lr_schedule.min_lr: {min_lr:g} is above optimizer.learning_rate "
                             f"{self.optimizer.learning_rate:g}; the schedule lowers the rate towards min_lr, so "
                             "min_lr must be <= learning_rate")
        return self


# Body of POST /v1/jobs.
class JobCreate(TrainingParams):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "network_id": "3f2b0c...", "dataset_id": "9a1d4e...", "validation_split": 0.2,
        "epochs": 30, "batch_size": 32, "optimizer": {"type": "adam", "learning_rate": 0.001},
        "weight_decay": 0.0, "early_stopping": {"monitor": "val_loss", "patience": 5},
        "standardize": True, "seed": 0}]})

    network_id: str = Field(description="The network (architecture) to train.")
    dataset_id: str = Field(description="The training data set.")

    def training_params(self) -> dict[str, Any]:
        """The training fields as a JSON-able dict (what the job row stores)."""
        return self.model_dump(mode="json", exclude={"network_id", "dataset_id"})


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# How far a job is: completed epochs of the planned ones, the fraction of all minibatches done (updated about once
# a second while running) and the seconds left at the smoothed training rate.
class Progress(BaseModel):
    epoch: int = Field(description="Epochs completed (predict jobs: rows scored).")
    epochs: int = Field(description="Epochs planned (predict jobs: rows of the data set).")
    fraction: float = Field(description="Minibatches done / minibatches planned (about twice a second while "
                                        "running; predict jobs: epoch / epochs), 1.0 when done.")
    eta_seconds: float | None = Field(
        description="Estimated seconds left from the exponentially smoothed training rate; null until known, 0 "
                    "when done.")
    batch: int | None = Field(None, description="Minibatches done of the epoch in progress (while running).")
    batches: int | None = Field(None, description="Minibatches per epoch (while running).")
    fold: int | None = Field(None, description="With cross_validation, while a fold model trains: its number "
                                               "(1..folds); absent for the final model.")
    folds: int | None = Field(None, description="With cross_validation, while a fold model trains: the folds.")

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler):
        out = handler(self)
        return {k: v for k, v in out.items() if v is not None or k not in ("batch", "batches", "fold", "folds")}


JOB_EXAMPLE = {
    "id": "7b8b965ad4bca0e41ab51de7b31363a1", "status": "running", "network_id": "3f0c9a1e8b7d4c2a9e6f5d4c3b2a1908",
    "dataset_id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1", "validation_dataset_id": None,
    "params": {"epochs": 30, "batch_size": 32, "validation_split": 0.2,
               "optimizer": {"type": "adam", "learning_rate": 0.001}},
    "progress": {"epoch": 12, "epochs": 30, "fraction": 0.406667, "eta_seconds": 3.6, "batch": 50, "batches": 250},
    "metrics": {"epoch": 12, "train_loss": 0.21, "val_loss": 0.25, "train_accuracy": 0.93, "val_accuracy": 0.91,
                "seconds": 0.2},
    "best_epoch": 12, "model_id": None, "error": None, "cancel_requested": False, "attempt": 1,
    "created_at": "2026-01-01T12:00:00Z", "started_at": "2026-01-01T12:00:01Z",
    "updated_at": "2026-01-01T12:00:04Z", "finished_at": None}
EPOCH_EXAMPLE = {"epoch": 1, "train_loss": 0.71, "train_accuracy": 0.62, "val_loss": 0.69, "val_accuracy": 0.66,
                 "seconds": 0.02}


# Body of POST /v1/models/{id}/predictions: score a stored data set with the model, as a job.
class PredictionCreate(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"dataset_id": "9b1f0e2d3c4b5a69788796a5b4c3d2e1", "format": "parquet"}]})

    dataset_id: str = Field(description="The stored data set to score; its columns are matched by name to the "
                                        "model's input_schema (extra columns, such as the target, are ignored).")
    format: Literal["csv", "parquet"] = Field("csv", description="File format of the predictions: csv or parquet.")


# A job as the API shows it.
class JobRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    id: str = Field(description="The job's id.")
    kind: Literal["train", "predict"] = Field(
        "train", description="train (a training run) or predict (batch scoring of dataset_id with model_id; "
                             "progress counts rows instead of epochs).")
    status: JobStatus = Field(description="queued, running, succeeded, failed or cancelled.")
    network_id: str = Field(description="The network trained.")
    dataset_id: str = Field(description="The training data set.")
    validation_dataset_id: str | None = Field(description="The validation data set, if one was given.")
    sweep_id: str | None = Field(None, description="The sweep this job is a trial of.")
    params: dict[str, Any] = Field(description="The training fields of the request, with defaults filled in.")
    progress: Progress = Field(description="Epochs done, planned, fraction and time left.")
    metrics: dict[str, Any] | None = Field(None, description="The latest epoch's metrics.")
    best_epoch: int | None = Field(
        description="The epoch the monitor liked best (early stopping's monitor; else val_loss with validation data, "
                    "else train_loss). The model keeps its weights only with early stopping (restore_best); "
                    "without it the model holds the last epoch's weights, and the model's answer has no "
                    "best_epoch.")
    cross_validation: dict[str, Any] | None = Field(
        None, description="With cross_validation: {folds, metrics (per fold: fold, rows, epochs, best_epoch and the "
                          "held-out loss, accuracy, auc (binary) or mae, rmse, r2), mean, std (ddof=1)} once the "
                          "folds are done; else null.")
    model_id: str | None = Field(description="The trained model, once the job succeeded (predict jobs: the model "
                                             "that scores).")
    error: str | None = Field(description="Why the job failed; null otherwise.")
    cancel_requested: bool = Field(description="True once a cancel was asked for.")
    attempt: int = Field(description="How many times a worker has started (or resumed) the job.")
    created_at: datetime = Field(description="When the job was created (UTC).")
    started_at: datetime | None = Field(description="When a worker first started it.")
    first_batch_at: datetime | None = Field(
        None, description="When the latest attempt began its first minibatch (UTC); minus created_at, the time "
                          "from queued to training on a warm worker.")
    updated_at: datetime = Field(description="Last change of the row.")
    finished_at: datetime | None = Field(description="When it succeeded, failed or was cancelled.")

    @classmethod
    def from_row(cls, job) -> "JobRead":
        """Build from a jobs.tables.Job row."""
        return cls(
            id=job.id, kind=getattr(job, "kind", None) or "train", status=job.status, network_id=job.network_id,
            dataset_id=job.dataset_id, validation_dataset_id=job.validation_dataset_id, sweep_id=job.sweep_id,
            params=job.params, progress=_progress(job),
            metrics=job.metrics, best_epoch=job.best_epoch, cross_validation=getattr(job, "cross_validation", None),
            model_id=job.model_id, error=job.error,
            cancel_requested=job.cancel_requested, attempt=job.attempt, created_at=job.created_at,
            started_at=job.started_at, first_batch_at=_first_batch_at(job), updated_at=job.updated_at,
            finished_at=job.finished_at)


def _first_batch_at(job) -> datetime | None:
    """The worker's report of the attempt's first minibatch (epoch seconds in the progress JSON), as UTC."""
    at = (job.progress or {}).get("first_batch_at")
    return datetime.fromtimestamp(float(at), tz=timezone.utc) if at is not None else None


def _progress(job) -> Progress:
    """Epochs done; while running, the worker's minibatch count and smoothed ETA when it has reported one."""
    if job.status == JobStatus.succeeded.value:
        return Progress(epoch=job.epoch, epochs=job.epochs, fraction=1.0, eta_seconds=0.0)
    fraction = job.epoch / job.epochs if job.epochs else 0.0
    eta = batch = batches = None
    live = job.progress if job.status == JobStatus.running.value else None
    if live:
        fraction, eta = max(fraction, float(live["fraction"])), live.get("eta_seconds")
        if eta is not None and live.get("at") is not None:  # the time since the report has passed too
            eta = round(max(eta - max(time.time() - float(live["at"]), 0.0), 0.0), 2)
        if live.get("fold") is not None or int(live.get("epoch", 0)) > job.epoch:  # else that epoch has ended
            batch, batches = live.get("batch"), live.get("batches")
    elif job.progress and job.status in (JobStatus.cancelled.value, JobStatus.failed.value):
        fraction = max(fraction, float(job.progress["fraction"]))  # how far it got (a fold model, mid-epoch)
    elif job.status == JobStatus.running.value and job.metrics and job.metrics.get("rows_per_second"):
        eta = round(max(job.epochs - job.epoch, 0) / float(job.metrics["rows_per_second"]), 3)
    elif job.status == JobStatus.running.value and job.metrics and job.metrics.get("seconds") is not None:
        eta = round(float(job.metrics["seconds"]) * max(job.epochs - job.epoch, 0), 3)
    return Progress(epoch=job.epoch, epochs=job.epochs, fraction=round(fraction, 6), eta_seconds=eta,
                    batch=batch, batches=batches, fold=live.get("fold") if live else None,
                    folds=live.get("folds") if live else None)


# A page of jobs.
class JobList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [JOB_EXAMPLE], "total": 1}]})

    items: list[JobRead] = Field(description="One page of jobs, newest first.")
    total: int = Field(description="Jobs matching the filter, over all pages.")


# One epoch's metrics (fields depend on the task and on whether there is validation data).
class EpochMetrics(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EPOCH_EXAMPLE]})

    epoch: int = Field(description="Epoch number, from 1.")
    train_loss: float = Field(description="Mean training loss of the epoch.")
    train_accuracy: float | None = Field(None, description="Training accuracy (classification).")
    train_mae: float | None = Field(None, description="Training mean absolute error (regression).")
    val_loss: float | None = Field(None, description="Validation loss.")
    val_accuracy: float | None = Field(None, description="Validation accuracy (classification).")
    val_mae: float | None = Field(None, description="Validation mean absolute error (regression).")
    val_rmse: float | None = Field(None, description="Validation root mean squared error (regression).")
    val_r2: float | None = Field(None, description="Validation R² (regression).")
    val_auc: float | None = Field(None, description="Validation ROC AUC (binary classification with both classes "
                                                    "among at most 100,000 validation rows).")
    lr: float | None = Field(None, description="The learning rate in effect during the epoch.")
    seconds: float | None = Field(None, description="Wall time of the epoch.")

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


# Per-epoch history of a job.
class MetricsList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [EPOCH_EXAMPLE], "total": 1}]})

    items: list[EpochMetrics] = Field(description="Per-epoch metrics, in epoch order.")
    total: int = Field(description="Epochs recorded.")
