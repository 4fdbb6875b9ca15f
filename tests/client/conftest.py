"""Fixtures for the client and CLI tests: a real ``mlp-service serve`` subprocess shared by a test module."""

from __future__ import annotations

import pytest

from tests.service.helpers import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One live server (1 embedded worker, no API keys) for the whole module."""
    srv = LiveServer(tmp_path_factory.mktemp("srv") / "data", workers=1).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path):
    """make_server(env={...}) -> a started LiveServer with extra MLP_ settings; stopped at teardown."""
    servers: list[LiveServer] = []

    def start(env: dict | None = None, workers: int = 1) -> LiveServer:
        srv = LiveServer(tmp_path / f"data{len(servers)}", workers=workers, env=env)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()
