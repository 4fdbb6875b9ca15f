"""Fixtures for the service tests.

- ``client``: a TestClient over ``create_app(Settings(data_dir=tmp_path, workers=1))`` with the lifespan running;
  a test marked ``@pytest.mark.settings(max_layers=2)`` gets those fields too (Settings are frozen).
- ``make_network`` / ``make_dataset`` / ``wait_job`` / ``trained_model`` / ``blob_setup``: small helpers over the
  HTTP API.
- ``live_server``: starts the real ``mlp-service serve`` as a subprocess on a free port (restart, kill -9).

Helpers that test modules import (blobs, mlp_spec, post_network, assert_same_404, LiveServer, ...) live in
helpers.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service import helpers
from tests.service.helpers import LiveServer, blobs, mlp_spec


def pytest_configure(config):
    config.addinivalue_line("markers", "settings(**fields): build the test's app with these Settings fields")


@pytest.fixture
def settings(request, tmp_path) -> Settings:
    """Settings on a fresh data directory with one embedded worker, spawned with the first job so that tests
    without jobs start no process (plus ``@pytest.mark.settings(...)`` fields)."""
    marker = request.node.get_closest_marker("settings")
    fields = {"prestart_workers": False, **(marker.kwargs if marker else {})}
    return Settings(data_dir=tmp_path / "data", workers=1, **fields)


@pytest.fixture
def app(settings):
    """The application built by the factory (lifespan not yet started)."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A TestClient with the lifespan running (executor started, stopped afterwards)."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_network():
    """make_network(client, spec) -> the created network's JSON (asserts 201)."""
    return helpers.post_network


@pytest.fixture
def make_dataset():
    """make_dataset(client, X, y, task=None, name=...) -> the created data set's JSON (asserts 201)."""
    return helpers.post_dataset


@pytest.fixture
def wait_job():
    """wait_job(client, job_id, timeout=60, until=terminal statuses) -> the job's JSON."""
    return helpers.wait_job


@pytest.fixture
def trained_model(client):
    """A succeeded 3-class job on string labels: {"job", "dataset", "network", "model_id", "X", "y"}."""
    X, y = blobs()
    labels = np.array(["red", "green", "blue"])[y]
    net = helpers.post_network(client, mlp_spec(3))
    ds = helpers.post_dataset(client, X, labels, name="blobs")
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 20,
                                      "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.01}})
    assert r.status_code == 202, r.text
    job = helpers.wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return {"job": job, "dataset": ds, "network": net, "model_id": job["model_id"], "X": X, "y": labels}


@pytest.fixture
def blob_setup(client):
    """(network, data set) JSON: a 3-class data set (4 features, labels "a", "b", "c") and a matching network."""
    X, y = blobs()
    ds = helpers.post_dataset(client, X, np.array(["a", "b", "c"])[y])
    net = helpers.post_network(client, mlp_spec(3))
    return net, ds


@pytest.fixture
def live_server(tmp_path):
    """live_server(workers=1, env=None) -> a started LiveServer; all are stopped at teardown."""
    servers: list[LiveServer] = []

    def start(**kw) -> LiveServer:
        srv = LiveServer(tmp_path / "data", **kw)
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        srv.stop()

