"""The trained-models table: one row per succeeded job (inserted by the job worker); weights in storage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, new_id, utcnow


class TrainedModel(Base):
    """A trained network; ``artifact_key`` (``models/{id}/model.npz``) holds a core Network.save file.

    No foreign keys to networks/datasets: a model is self-contained (weights, standardisation, classes) and
    keeps working after its network or data set is deleted.
    """

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    network_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dataset_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    task: Mapped[str] = mapped_column(String(20))
    classes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    input_dim: Mapped[int] = mapped_column(Integer)
    output_dim: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    artifact_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
