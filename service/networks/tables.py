"""The networks table: a validated architecture (spec) and what it implies (output width, task, size)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, new_id, utcnow


class Network(Base):
    """One network architecture; ``spec`` is the normalised dict accepted by core.Network.from_spec."""

    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column(JSON)
    input_dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_dim: Mapped[int] = mapped_column(Integer)
    n_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
