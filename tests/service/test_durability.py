"""Durability with a real server process: kill -9 and restart, graceful restart, queued jobs, crashing workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import core
from tests.service.helpers import blobs

TERMINAL = ("succeeded", "failed", "cancelled")

# Big enough that an epoch takes ~0.1-0.3 s (batch 8), small enough that the whole job takes a few seconds.
SPEC = {"name": "durable", "layers": [{"type": "dense", "units": 64, "activation": "relu"},
                                      {"type": "dropout", "rate": 0.1},
                                      {"type": "dense", "units": 64, "activation": "tanh"},
                                      {"type": "dense", "units": 3, "activation": "softmax"}],
        "loss": "cross_entropy"}
EPOCHS = 16


def _job_body(net_id: str, ds_id: str, **kw) -> dict:
    body = {"network_id": net_id, "dataset_id": ds_id, "epochs": EPOCHS, "batch_size": 8, "seed": 11,
            "validation_split": 0.1, "optimizer": {"type": "sgd", "learning_rate": 0.01, "momentum": 0.9,
                                                   "nesterov": True}}
    body.update(kw)
    return body


def _setup(http, n: int = 12000) -> tuple[str, str, np.ndarray]:
    X, y = blobs(n=n, d=16, seed=5)
    r = http.post("/v1/datasets", json={"name": "blobs", "X": X.tolist(), "y": y.tolist()})
    assert r.status_code == 201, r.text
    r2 = http.post("/v1/networks", json=SPEC)
    assert r2.status_code == 201, r2.text
    return r2.json()["id"], r.json()["id"], X


def _wait(http, job_id: str, until=TERMINAL, *, epoch: int | None = None, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until or (epoch is not None and job["progress"]["epoch"] >= epoch):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck: {job}")
        time.sleep(0.05)


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _model_arrays(data_dir: Path, model_id: str) -> dict[str, np.ndarray]:
    with np.load(data_dir / "artifacts" / "models" / model_id / "model.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}


def test_kill9_while_training_resumes_from_checkpoint(live_server):
    srv = live_server(workers=1)
    with srv.client() as http:
        net_id, ds_id, X = _setup(http)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id)).json()["id"]
        job = _wait(http, job_id, epoch=3)
        assert job["status"] == "running", job
        workers = srv.children()
    assert workers, "the server should have a worker process"

    srv.kill9()
    assert _gone(workers), "worker processes must die with the server"
    ckpt = srv.data_dir / "artifacts" / "jobs" / job_id / "checkpoint.npz"
    done_before = core.TrainingState.load(ckpt).epoch  # the first epoch, then one at most every second
    assert 1 <= done_before < EPOCHS

    srv.start()
    with srv.client() as http:
        job = _wait(http, job_id)
        assert job["status"] == "succeeded", job
        assert job["attempt"] == 2 and job["progress"]["epoch"] == EPOCHS
        epochs = [m["epoch"] for m in http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]]
        assert epochs == list(range(1, EPOCHS + 1))  # every epoch exactly once
        assert f"job {job_id}: resuming after epoch {done_before}" in srv.log()

        # The same job, never interrupted, ends with bitwise the same weights and predictions.
        ref_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id)).json()["id"]
        ref = _wait(http, ref_id)
        assert ref["status"] == "succeeded" and ref["attempt"] == 1
        resumed_w, ref_w = _model_arrays(srv.data_dir, job["model_id"]), _model_arrays(srv.data_dir, ref["model_id"])
        assert resumed_w.keys() == ref_w.keys()
        for k in ref_w:
            np.testing.assert_array_equal(resumed_w[k], ref_w[k], err_msg=k)
        rows = X[:50].tolist()
        p1 = http.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": rows}).json()
        p2 = http.post(f"/v1/models/{ref['model_id']}/predict", json={"inputs": rows}).json()
        assert p1 == p2
        m1 = http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
        m2 = http.get(f"/v1/jobs/{ref_id}/metrics").json()["items"]
        strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
        assert strip(m1) == strip(m2)


def test_graceful_restart_requeues_and_resumes(live_server):
    srv = live_server(workers=1)
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id)).json()["id"]
        _wait(http, job_id, epoch=2)
    t0 = time.monotonic()
    srv.stop()  # SIGTERM: the worker stops within a minibatch and hands the job back to the queue
    assert time.monotonic() - t0 < 15
    srv.start()
    with srv.client() as http:
        job = _wait(http, job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 2, job
        epochs = [m["epoch"] for m in http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]]
        assert epochs == list(range(1, EPOCHS + 1))


def test_queued_job_survives_kill9(live_server):
    srv = live_server(workers=0)  # no workers: the job can only wait in the queue
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=600)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=3)).json()["id"]
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    srv.kill9()
    srv.start(workers=1)
    with srv.client() as http:
        job = _wait(http, job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 1, job


def test_crashing_worker_fails_its_job_and_is_replaced(live_server):
    srv = live_server(workers=1, env={"MLP_MAX_JOB_ATTEMPTS": "1"})  # no second attempt: the job fails
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=4000)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=1000)).json()["id"]
        _wait(http, job_id, epoch=1)
        (worker,) = srv.children()
        os.kill(worker, signal.SIGKILL)
        job = _wait(http, job_id, timeout=15)
        assert job["status"] == "failed", job
        assert job["error"].startswith(f"the worker process (pid {worker}) was killed by signal SIGKILL while "
                                       "training this job")
        assert job["finished_at"] and job["model_id"] is None

        # A replacement worker takes the next job.
        small = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=1)).json()["id"]
        assert _wait(http, small)["status"] == "succeeded"
        assert worker not in srv.children()


def test_workers_train_below_the_api_priority(live_server):
    """Training must not delay the API on its own cores: workers run at nice 10 (or as SCHED_IDLE)."""
    srv = live_server(workers=1)
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=600)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=1)).json()["id"]
        assert _wait(http, job_id)["status"] == "succeeded"
        (worker,) = srv.children()
        idle = os.sched_getscheduler(worker) == os.SCHED_IDLE
        assert idle or os.getpriority(os.PRIO_PROCESS, worker) >= 10
        assert os.sched_getscheduler(srv.proc.pid) == os.SCHED_OTHER  # the API itself is not demoted
