"""Who is calling: every request resolves to an owner (tenant) id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

DEFAULT_OWNER = "default"


def get_owner(request: Request) -> str:
    """Return the caller's tenant; without API keys configured everything belongs to ``default``."""
    return DEFAULT_OWNER


OwnerDep = Annotated[str, Depends(get_owner)]
