"""The api_keys table: one row per key, holding only a salted scrypt hash of its secret part."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from service.database import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """A tenant's key; ``id`` is the public key-id part of ``mlp_<id>_<secret>``, ``owner`` the tenant."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    salt: Mapped[str] = mapped_column(String(64))          # hex
    hash: Mapped[str] = mapped_column(String(128))         # hex scrypt(secret, salt)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
