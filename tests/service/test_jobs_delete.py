"""DELETE /v1/jobs/{id}: a finished job goes with its metrics and checkpoints; its model stays unless asked."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.helpers import blobs, mlp_spec


def _job(client, net, ds, **kw):
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 3,
                                      "batch_size": 16, **kw})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _setup(client, make_network, make_dataset, n=240, d=4, hidden=16):
    X, y = blobs(n=n, d=d)
    return make_network(client, mlp_spec(3, hidden=hidden)), make_dataset(client, X, y)


def test_delete_succeeded_job_keeps_its_model(client, settings, make_network, make_dataset, wait_job):
    net, ds = _setup(client, make_network, make_dataset)
    job = wait_job(client, _job(client, net, ds))
    assert job["status"] == "succeeded"
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 204 and r.content == b""
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/metrics", f"/v1/jobs/{job['id']}/events"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["detail"] == f"job {job['id']} not found"
    assert job["id"] not in [j["id"] for j in client.get("/v1/jobs").json()["items"]]
    r = client.get(f"/v1/models/{job['model_id']}")
    assert r.status_code == 200 and r.json()["job_id"] == job["id"]
    r = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": [[0.0, 0.0, 0.0, 0.0]]})
    assert r.status_code == 200
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 404 and r.json()["detail"] == f"job {job['id']} not found"


def test_delete_with_delete_model_removes_the_model_and_its_file(client, settings, make_network, make_dataset,
                                                                 wait_job):
    net, ds = _setup(client, make_network, make_dataset)
    job = wait_job(client, _job(client, net, ds))
    model_dir = Path(settings.storage_url) / "models" / job["model_id"]
    assert model_dir.is_dir()
    r = client.delete(f"/v1/jobs/{job['id']}", params={"delete_model": "true"})
    assert r.status_code == 204
    r = client.get(f"/v1/models/{job['model_id']}")
    assert r.status_code == 404 and r.json()["detail"] == f"model {job['model_id']} not found"
    assert not model_dir.exists()


def test_delete_cancelled_job_removes_its_checkpoint(client, settings, make_network, make_dataset, wait_job):
    net, ds = _setup(client, make_network, make_dataset, n=2000, d=8, hidden=64)
    job_id = _job(client, net, ds, epochs=1000, batch_size=4)
    ckpt = Path(settings.storage_url) / "jobs" / job_id / "checkpoint.npz"
    deadline = time.monotonic() + 60
    while not ckpt.exists():                 # at least one epoch done and checkpointed
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.1)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = wait_job(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and ckpt.exists() and job["progress"]["epoch"] >= 1
    assert client.get(f"/v1/jobs/{job_id}/metrics").json()["total"] >= 1
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 204
    assert not ckpt.parent.exists()
    assert client.get(f"/v1/jobs/{job_id}/metrics").status_code == 404


def test_delete_running_job_is_409(client, make_network, make_dataset, wait_job):
    net, ds = _setup(client, make_network, make_dataset, n=2000, d=8, hidden=64)
    job_id = _job(client, net, ds, epochs=1000, batch_size=4)
    job = wait_job(client, job_id, until=("running", "succeeded", "failed", "cancelled"))
    assert job["status"] == "running"
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 409
    assert r.json()["detail"] == (f"job {job_id} is running; only finished jobs (succeeded, failed or cancelled) "
                                  "can be deleted: cancel it first")
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    client.post(f"/v1/jobs/{job_id}/cancel")
    wait_job(client, job_id, timeout=30)


def test_delete_queued_job_is_409(tmp_path, make_network, make_dataset):
    with TestClient(create_app(Settings(data_dir=tmp_path / "d", workers=0))) as client:  # nothing trains
        net, ds = _setup(client, make_network, make_dataset)
        job_id = _job(client, net, ds)
        r = client.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 409
        assert r.json()["detail"].startswith(f"job {job_id} is queued; only finished jobs")


def test_delete_unknown_job_is_404(client):
    r = client.delete("/v1/jobs/" + "0" * 32)
    assert r.status_code == 404 and r.json()["detail"] == f"job {'0' * 32} not found"
    r = client.delete("/v1/jobs/" + "0" * 32, params={"delete_model": "maybe"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "delete_model"]

