"""``MLP_STORAGE_URL=s3://bucket/prefix`` against moto's S3 server: the Storage contract and a full job."""

from __future__ import annotations

import os
import signal
import uuid

import numpy as np
import pytest

from service.settings import Settings
from service.storage import S3Storage, make_storage
from tests.distributed.conftest import S3_ENV, job_body, setup_data, wait_job


@pytest.fixture
def s3_url(s3_endpoint, monkeypatch):
    """A fresh bucket on the S3 endpoint; the AWS variables point this process at it."""
    for k, v in dict(S3_ENV, AWS_ENDPOINT_URL=s3_endpoint).items():
        monkeypatch.setenv(k, v)
    import s3fs

    bucket = f"mlp-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/artifacts"


def test_s3_storage_round_trip(s3_url, tmp_path):
    storage = make_storage(Settings(storage_url=s3_url, data_dir=tmp_path / "node-a"))
    assert isinstance(storage, S3Storage)
    other = make_storage(Settings(storage_url=s3_url, data_dir=tmp_path / "node-b"))  # another machine

    storage.write_bytes("a/b.bin", b"hello")
    assert other.exists("a/b.bin")
    with other.open_read("a/b.bin") as fh:
        assert fh.read() == b"hello"

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    storage.save_array("datasets/x/X.npy", arr)
    assert np.array_equal(other.load_array("datasets/x/X.npy"), arr)

    # Overwrites are seen by readers whose cached copy is older (checkpoints move between workers).
    storage.save_array("datasets/x/X.npy", arr * 2)
    assert np.array_equal(other.load_array("datasets/x/X.npy"), arr * 2)

    # Nothing is visible until the writer finishes: one PUT at the end.
    with storage.atomic_writer("jobs/j/checkpoint.npz") as tmp:
        tmp.write_bytes(b"x" * 100_000)
        assert not other.exists("jobs/j/checkpoint.npz")
    assert other.local_path("jobs/j/checkpoint.npz").read_bytes() == b"x" * 100_000

    src = tmp_path / "src.bin"
    src.write_bytes(b"file")
    storage.put_file("models/m/model.npz", src)
    assert other.open_read("models/m/model.npz").read() == b"file"

    # A local write published with upload_local (what the training worker does after each checkpoint).
    storage.local_path("jobs/k/state.npz").parent.mkdir(parents=True, exist_ok=True)
    storage.local_path("jobs/k/state.npz").write_bytes(b"state")
    storage.upload_local("jobs/k/state.npz")
    assert other.local_path("jobs/k/state.npz").read_bytes() == b"state"

    storage.delete_prefix("datasets/x")
    assert not other.exists("datasets/x/X.npy")
    assert not other.local_path("datasets/x/X.npy").exists()  # the stale local copy goes too
    with pytest.raises(ValueError):
        storage.write_bytes("../escape", b"")


def test_job_through_s3_between_machines(cluster, redis_url, s3_url, s3_endpoint, tmp_path):
    # API and workers share only the database, the broker and the bucket (separate data directories).
    # The job starts on one worker, is handed back at SIGTERM, and resumes on another from the S3 checkpoint.
    env = dict(S3_ENV, AWS_ENDPOINT_URL=s3_endpoint)
    c = cluster(database_url=f"sqlite:///{tmp_path / 'shared.db'}", broker_url=redis_url, storage_url=s3_url,
                extra_env=env)
    api = c.api(env={"MLP_DATA_DIR": str(tmp_path / "api-node")})
    first = c.worker(env={"MLP_DATA_DIR": str(tmp_path / "worker-node-1")})
    with api.client() as http:
        net_id, ds_id, X = setup_data(http, n=1500)
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 4, epochs=20)).json()["id"]
        wait_job(http, job_id, cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 2)
        os.kill(first.pid, signal.SIGTERM)
        first.proc.wait(timeout=30)
        second = c.worker(env={"MLP_DATA_DIR": str(tmp_path / "worker-node-2")})
        job = wait_job(http, job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 2, f"{job}\n{c.logs()}"
        items = http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
        assert [m["epoch"] for m in items] == list(range(1, 21))
        assert f"job {job_id}: resuming after epoch" in second.log()
        r = http.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": X[:5].tolist()})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 5
    storage = make_storage(Settings(storage_url=s3_url, data_dir=tmp_path / "checker"))
    assert storage.exists(f"datasets/{ds_id}/X.npy")
    assert storage.exists(f"models/{job['model_id']}/model.npz")
    assert not storage.exists(f"jobs/{job_id}/checkpoint.npz")  # cleaned up after success
