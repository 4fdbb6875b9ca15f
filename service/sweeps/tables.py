"""Sweep and trial rows: the whole state of a sweep lives here, so any API process can drive it after a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, new_id, utcnow

# Sweep status values.
RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
SWEEP_TERMINAL = (SUCCEEDED, FAILED, CANCELLED)

# Trial status values: ``pending`` until its job exists, ``running`` while the job is queued or running.
PENDING, TRIAL_RUNNING, COMPLETE, PRUNED, TRIAL_FAILED, TRIAL_CANCELLED = (
    "pending", "running", "complete", "pruned", "failed", "cancelled")
TRIAL_ACTIVE = (PENDING, TRIAL_RUNNING)


class Sweep(Base):
    """One hyper-parameter search: the request, its status, and the lease of the API process driving it."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the validated SweepCreate body
    status: Mapped[str] = mapped_column(String(16), default=RUNNING, index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it ended
    best_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    importances: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SweepTrial(Base):
    """One trial of a sweep: Optuna's proposal, its job, and its outcome (``number`` is Optuna's trial number)."""

    __tablename__ = "sweep_trials"
    __table_args__ = (UniqueConstraint("sweep_id", "number", name="uq_sweep_trials_sweep_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(String(32), ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    network_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    model_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # the epoch reached (pruned: when it was stopped)
    intermediate: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)  # epoch -> metric value
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
