"""Fixtures for the service tests: an app on a temporary data directory, and a TestClient over it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings on a fresh data directory with one embedded worker."""
    return Settings(data_dir=tmp_path / "data", workers=1)


@pytest.fixture
def app(settings):
    """The application built by the factory (lifespan not yet started)."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A TestClient with the lifespan running (executor started, stopped afterwards)."""
    with TestClient(app) as c:
        yield c
