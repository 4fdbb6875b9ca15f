"""Fixtures for the service tests.

- ``client``: a TestClient over ``create_app(Settings(data_dir=tmp_path, workers=1))`` with the lifespan running;
  a test marked ``@pytest.mark.settings(max_layers=2)`` gets those fields too (Settings are frozen).
- ``make_network`` / ``make_dataset`` / ``wait_job`` / ``trained_model``: small helpers over the HTTP API.
- ``live_server``: starts the real ``mlp-service serve`` as a subprocess on a free port (restart, kill -9).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


def pytest_configure(config):
    config.addinivalue_line("markers", "settings(**fields): build the test's app with these Settings fields")


@pytest.fixture
def settings(request, tmp_path) -> Settings:
    """Settings on a fresh data directory with one embedded worker (plus ``@pytest.mark.settings(...)`` fields)."""
    marker = request.node.get_closest_marker("settings")
    return Settings(data_dir=tmp_path / "data", workers=1, **(marker.kwargs if marker else {}))


@pytest.fixture
def app(settings):
    """The application built by the factory (lifespan not yet started)."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A TestClient with the lifespan running (executor started, stopped afterwards)."""
    with TestClient(app) as c:
        yield c


# -- data and API helpers ------------------------------------------------------------------------------------
def blobs(n: int = 240, d: int = 4, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated Gaussian clusters: X float (n, d), y int (n,)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    y = np.arange(n) % k
    X = centers[y] + rng.normal(size=(n, d))
    return X.round(4), y


def mlp_spec(n_out: int, *, loss: str = "cross_entropy", hidden: int = 16, input_dim: int | None = None,
             out_activation: str | None = None) -> dict:
    """A one-hidden-layer network spec."""
    act = out_activation or {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(loss, "linear")
    spec = {"name": "test-mlp", "layers": [{"type": "dense", "units": hidden, "activation": "relu"},
                                           {"type": "dense", "units": n_out, "activation": act}], "loss": loss}
    if input_dim is not None:
        spec["input_dim"] = input_dim
    return spec


def _post_network(client, spec: dict) -> dict:
    r = client.post("/v1/networks", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def _post_dataset(client, X, y, *, task: str | None = None, name: str = "test-data") -> dict:
    body = {"name": name, "X": np.asarray(X).tolist(), "y": np.asarray(y).tolist()}
    if task:
        body["task"] = task
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _wait_job(client, job_id: str, *, timeout: float = 60.0, until=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.05)


@pytest.fixture
def make_network():
    """make_network(client, spec) -> the created network's JSON (asserts 201)."""
    return _post_network


@pytest.fixture
def make_dataset():
    """make_dataset(client, X, y, task=None, name=...) -> the created data set's JSON (asserts 201)."""
    return _post_dataset


@pytest.fixture
def wait_job():
    """wait_job(client, job_id, timeout=60, until=terminal statuses) -> the job's JSON."""
    return _wait_job


@pytest.fixture
def trained_model(client):
    """A succeeded 3-class job on string labels: {"job", "dataset", "network", "model_id", "X", "y"}."""
    X, y = blobs()
    labels = np.array(["red", "green", "blue"])[y]
    net = _post_network(client, mlp_spec(3))
    ds = _post_dataset(client, X, labels, name="blobs")
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 20,
                                      "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.01}})
    assert r.status_code == 202, r.text
    job = _wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return {"job": job, "dataset": ds, "network": net, "model_id": job["model_id"], "X": X, "y": labels}


# -- a real server process ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command() -> list[str]:
    """The installed console script if present, else the module (same code path: service.cli:main)."""
    script = Path(sys.executable).with_name("mlp-service")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "service.cli"]


class LiveServer:
    """``mlp-service serve`` in a subprocess on a free port with its own MLP_DATA_DIR."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, workers: int | None = None, timeout: float = 30.0) -> "LiveServer":
        if workers is not None:
            self.workers = workers
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
        env.update({"MLP_DATA_DIR": str(self.data_dir), "MLP_WORKERS": str(self.workers),
                    "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(self.port),
                                                        "--no-access-log"],
                                     cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def kill9(self) -> None:
        """SIGKILL the server process (its workers die with it)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def children(self) -> list[int]:
        """Pids of the server's worker processes (children started by multiprocessing's spawn_main)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.proc.pid:
                    continue
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                pids.append(int(stat.parent.name))
        return pids

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


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

