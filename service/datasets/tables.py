"""The datasets table; the arrays live in storage under ``datasets/{id}/X.npy`` and ``y.npy``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, new_id, utcnow


class Dataset(Base):
    """One uploaded data set; ``classes[i]`` is the label of class index i (classification only)."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(20))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_outputs: Mapped[int] = mapped_column(Integer, default=1)
    feature_names: Mapped[list] = mapped_column(JSON)
    classes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # per-column types and profile (parsing.py documents it); null for data sets stored before it existed
    columns: Mapped[list | None] = mapped_column(JSON, nullable=True)
    n_dropped: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
