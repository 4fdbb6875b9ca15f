"""Helpers shared by the service tests (and by tests/client, tests/adversarial): data, HTTP calls, a real server.

Fixtures live in conftest.py; everything a test module imports lives here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")
UNKNOWN_ID = "0" * 32  # an id no resource has


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


def post_network(client, spec: dict) -> dict:
    """Create a network (asserts 201); its JSON."""
    r = client.post("/v1/networks", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def post_dataset(client, X, y, *, task: str | None = None, name: str = "test-data") -> dict:
    """Upload X, y as a JSON data set (asserts 201); its JSON."""
    body = {"name": name, "X": np.asarray(X).tolist(), "y": np.asarray(y).tolist()}
    if task:
        body["task"] = task
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, JSON data) of each event in a text/event-stream body; comment-only blocks (``: keep-alive``) skipped.

    As the SSE spec reads a stream: blocks end at a blank line, and a line starting with ':' is a comment.
    """
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def wait_job(client, job_id: str, *, timeout: float = 60.0, until=TERMINAL) -> dict:
    """Poll the job until its status is in ``until``; its JSON (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.05)


# -- tenants --------------------------------------------------------------------------------------------------
def bearer(key: str) -> dict:
    """The ``Authorization`` header carrying ``key``."""
    return {"Authorization": f"Bearer {key}"}


class Tenant:
    """A client whose requests carry one tenant's key (``tenant.get(...)``, ``tenant.post(...)``, ...)."""

    def __init__(self, client, key: str):
        self.c, self.key = client, key

    def __getattr__(self, method):
        def call(*args, **kw):
            kw["headers"] = {**bearer(self.key), **kw.get("headers", {})}
            return getattr(self.c, method)(*args, **kw)
        return call


def add_keys(app, *tenants: str) -> dict[str, str]:
    """A new API key for each tenant, stored in the app's database: {tenant: key}."""
    from service.keys import service as keys_service

    with app.state.sessionmaker() as session:
        return {tenant: keys_service.create(session, tenant=tenant)[1] for tenant in tenants}


def train_blobs(client) -> dict:
    """A network, a 3-class data set and a succeeded 3-epoch job with its model, made through ``client``."""
    X, y = blobs(n=90)
    net = post_network(client, mlp_spec(3))
    ds = post_dataset(client, X, y, name="blobs")
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 3,
                                      "batch_size": 16})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return {"network": net, "dataset": ds, "job": job, "model_id": job["model_id"], "X": X}


def assert_detail(r, status: int, detail) -> None:
    """The answer has this status code and exactly this ``detail`` (the route tests' two checks per outcome)."""
    assert r.status_code == status, r.text
    assert r.json()["detail"] == detail


def assert_same_404(client, method: str, path_template: str, their_id: str, **kw) -> None:
    """Another tenant's id gets exactly the 404 of an id that does not exist (DESIGN: "the same 404").

    The whole answer is compared: status, content type and body, the unknown id's body with the id swapped in.
    """
    theirs = getattr(client, method)(path_template.format(their_id), **kw)
    unknown = getattr(client, method)(path_template.format(UNKNOWN_ID), **kw)
    assert unknown.status_code == 404, (path_template, unknown.text)
    assert theirs.status_code == unknown.status_code, (path_template, theirs.text)
    assert theirs.headers["content-type"] == unknown.headers["content-type"], path_template
    assert theirs.text == unknown.text.replace(UNKNOWN_ID, their_id), (path_template, theirs.text, unknown.text)


# -- a real server process ---------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log, *, timeout: float, what: str = "server") -> None:
    """Poll ``url``/healthz until it answers 200; RuntimeError with ``log()`` when ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout}s:\n{log()}")


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
        wait_healthy(self.url, self.proc, self.log, timeout=timeout)
        return self

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


def train_flowers(client, columns: list[str], **job) -> tuple[str, "object", np.ndarray]:
    """Upload 3 blobs as a CSV with named ``columns`` and a text target ``species``, train a 3-class model (job
    fields ``job``) and return (model id, the uploaded DataFrame, X)."""
    import pandas as pd

    X, y = blobs()
    df = pd.DataFrame(X, columns=columns)
    df["species"] = np.array(["setosa", "versicolor", "virginica"])[y]
    r = client.post("/v1/datasets", files={"file": ("flowers.csv", df.to_csv(index=False).encode(), "text/csv")},
                    data={"name": "flowers", "target": "species"})
    assert r.status_code == 201, r.text
    net = post_network(client, mlp_spec(3))
    done = wait_job(client, client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": r.json()["id"],
                                                          **job}).json()["id"])
    assert done["status"] == "succeeded", done
    return done["model_id"], df, X
