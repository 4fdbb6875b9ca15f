"""FastAPI dependencies that read the app's shared objects from ``request.app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.executor.base import Executor
from service.settings import Settings
from service.storage import Storage


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_storage(request: Request) -> Storage:
    """The app's artifact storage."""
    return request.app.state.storage


def get_executor(request: Request) -> Executor:
    """The app's job executor."""
    return request.app.state.executor


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
