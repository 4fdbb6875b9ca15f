"""Job and per-epoch metric rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, new_id, utcnow

# Status values; the terminal ones never change again.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
# Kinds of job: training a network, or batch scoring a stored data set with a trained model.
TRAIN, PREDICT = "train", "predict"
KINDS = (TRAIN, PREDICT)


class Job(Base):
    """A training run of one network on one data set, or (``kind='predict'``) batch scoring of a data set with
    the model ``model_id``; the table is also the work queue."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=TRAIN, server_default=TRAIN)
    network_id: Mapped[str] = mapped_column(String(32), index=True)
    dataset_id: Mapped[str] = mapped_column(String(32), index=True)
    validation_dataset_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # a sweep's trial
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # latest epoch's
    # Within-epoch progress of the running attempt: epoch, batch, batches, fraction, eta_seconds (about 1/s).
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # With cross_validation: the fold models' held-out metrics {folds, metrics, mean, std}, once the folds are done
    # (a resumed attempt that finds it goes straight to the final model).
    cross_validation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by every claim; a worker's writes carry its attempt, so a stale worker cannot write.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobMetric(Base):
    """One epoch's metrics of a job; (job_id, epoch) is unique, so resumed epochs never repeat."""

    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_job_metrics_job_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
