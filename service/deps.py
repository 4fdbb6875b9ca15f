"""Request plumbing in one place: FastAPI dependencies for the app's shared objects, the caller and paging.

Every one is ``async`` on purpose: none does I/O, and an async dependency costs no threadpool round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from service.auth import get_owner
from service.executor.base import Executor
from service.settings import Settings
from service.storage import Storage

MAX_INT = 2**31 - 1  # offsets and epochs stay within every database's INTEGER range


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


async def get_storage(request: Request) -> Storage:
    """The app's artifact storage."""
    return request.app.state.storage


async def get_executor(request: Request) -> Executor:
    """The app's job executor."""
    return request.app.state.executor


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, closed afterwards (it connects lazily, inside the sync route's thread)."""
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


@dataclass(frozen=True)
class Page:
    """One page of a list: at most ``limit`` items after skipping ``offset``."""

    limit: int
    offset: int


async def get_page(limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 50,
                   offset: Annotated[int, Query(ge=0, le=MAX_INT, description="Items to skip.")] = 0) -> Page:
    """The ``limit``/``offset`` query pair of every list route."""
    return Page(limit=limit, offset=offset)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
SessionDep = Annotated[Session, Depends(get_session)]
OwnerDep = Annotated[str, Depends(get_owner)]
PageDep = Annotated[Page, Depends(get_page)]
