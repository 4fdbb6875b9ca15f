"""Per-tenant quotas: each limit answers its status with a message naming the limit, and stores nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service import quotas
from service.app import create_app
from service.keys import service as keys_service
from service.settings import Settings
from tests.service.helpers import blobs, mlp_spec, post_dataset, post_network


def _app(tmp_path, **quota):
    """An idle app (no workers: jobs stay queued) with these quota settings."""
    return create_app(Settings(data_dir=tmp_path / "data", workers=0, **quota))


def _files(app) -> list[str]:
    root = app.state.storage.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".readyz")


def _job(client, net, ds, headers=None):
    return client.post("/v1/jobs", headers=headers or {},
                       json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 2})


def test_limit_reads_the_tenant_override_then_the_setting():
    s = Settings(quota_max_jobs=3, tenant_quotas={"alice": {"quota_max_jobs": 1, "quota_max_params": None}},
                 quota_max_params=500)
    assert quotas.limit(s, owner="alice", name="quota_max_jobs") == 1
    assert quotas.limit(s, owner="alice", name="quota_max_params") is None     # explicitly unlimited
    assert quotas.limit(s, owner="bob", name="quota_max_jobs") == 3
    assert quotas.limit(s, owner="bob", name="quota_max_stored_bytes") is None


def test_quota_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLP_QUOTA_MAX_JOBS", "7")
    monkeypatch.setenv("MLP_TENANT_QUOTAS", '{"alice": {"quota_max_stored_bytes": 1000}}')
    s = Settings()
    assert s.quota_max_jobs == 7 and s.tenant_quotas == {"alice": {"quota_max_stored_bytes": 1000}}


# -- 429: concurrent queued + running jobs --------------------------------------------------------------------

def test_jobs_quota_429_names_the_limit_and_stores_nothing(tmp_path):
    app = _app(tmp_path, quota_max_jobs=2)
    with TestClient(app) as c:
        X, y = blobs(n=60)
        net, ds = post_network(c, mlp_spec(3)), post_dataset(c, X, y)
        first = _job(c, net, ds)
        assert first.status_code == 202 and _job(c, net, ds).status_code == 202
        r = _job(c, net, ds)
        assert r.status_code == 429, r.text
        assert r.json() == {"detail": "quota exceeded: tenant default already has 2 queued or running jobs, the "
                                      "limit quota_max_jobs (MLP_QUOTA_MAX_JOBS)=2; wait for one to finish or "
                                      "cancel one"}
        assert r.headers["retry-after"] == "5"
        assert c.get("/v1/jobs").json()["total"] == 2
        # a finished (here: cancelled) job frees its slot
        assert c.post(f"/v1/jobs/{first.json()['id']}/cancel").status_code == 200
        assert _job(c, net, ds).status_code == 202
        assert _job(c, net, ds).status_code == 429
        assert c.get("/v1/jobs").json()["total"] == 3


def test_jobs_quota_is_per_tenant_with_overrides(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", workers=0, quota_max_jobs=2,
                              tenant_quotas={"alice": {"quota_max_jobs": 1}}))
    with app.state.sessionmaker() as session:
        _, ka = keys_service.create(session, tenant="alice")
        _, kb = keys_service.create(session, tenant="bob")
    a, b = {"Authorization": f"Bearer {ka}"}, {"Authorization": f"Bearer {kb}"}
    with TestClient(app) as c:
        X, y = blobs(n=60)
        made = {}
        for name, h in (("alice", a), ("bob", b)):
            net = c.post("/v1/networks", json=mlp_spec(3), headers=h).json()
            ds = c.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()}, headers=h).json()
            made[name] = (net, ds, h)
        assert _job(c, *made["alice"]).status_code == 202
        r = _job(c, *made["alice"])
        assert r.status_code == 429 and "quota_max_jobs (MLP_QUOTA_MAX_JOBS)=1" in r.json()["detail"]
        assert "tenant alice" in r.json()["detail"]
        assert _job(c, *made["bob"]).status_code == 202            # alice's jobs do not count for bob
        assert _job(c, *made["bob"]).status_code == 202
        assert _job(c, *made["bob"]).status_code == 429


# -- 413: one data set, and everything a tenant stores ----------------------------------------------------------

def test_dataset_size_quota_413_stores_nothing(tmp_path):
    app = _app(tmp_path, quota_max_dataset_bytes=2000)
    with TestClient(app) as c:
        X, y = blobs(n=12)
        assert c.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()}).status_code == 201
        before = _files(app)
        X, y = blobs(n=200)
        body = {"X": X.tolist(), "y": y.tolist()}
        r = c.post("/v1/datasets", json=body)
        assert r.status_code == 413, r.text
        assert r.json()["detail"].startswith("quota exceeded: the data set has ")
        assert "more than the limit quota_max_dataset_bytes (MLP_QUOTA_MAX_DATASET_BYTES)=2,000 for tenant " \
               "default" in r.json()["detail"]
        csv = "a,b,c,d,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{t}\n" for r, t in zip(X, y))
        r = c.post("/v1/datasets", files={"file": ("big.csv", csv.encode(), "text/csv")})
        assert r.status_code == 413 and "quota_max_dataset_bytes" in r.json()["detail"]
        assert c.get("/v1/datasets").json()["total"] == 1
        assert _files(app) == before                 # no arrays, no temporary upload left behind


def test_stored_bytes_quota_413_counts_what_the_tenant_keeps(tmp_path):
    X, y = blobs(n=30)
    body = {"X": X.tolist(), "y": y.tolist()}
    import orjson

    size = len(orjson.dumps(body))
    app = _app(tmp_path, quota_max_stored_bytes=int(size * 2.5))
    with TestClient(app) as c:
        first = c.post("/v1/datasets", content=orjson.dumps(body), headers={"content-type": "application/json"})
        assert first.status_code == 201 and first.json()["size_bytes"] == size
        assert c.post("/v1/datasets", content=orjson.dumps(body),
                      headers={"content-type": "application/json"}).status_code == 201
        before = _files(app)
        r = c.post("/v1/datasets", content=orjson.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == (f"quota exceeded: tenant default stores {2 * size:,} bytes of data sets; "
                                      f"{size:,} more would pass the limit quota_max_stored_bytes "
                                      f"(MLP_QUOTA_MAX_STORED_BYTES)={int(size * 2.5):,}. Delete data sets you "
                                      "no longer need")
        assert _files(app) == before and c.get("/v1/datasets").json()["total"] == 2
        # deleting frees the space
        assert c.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
        assert c.post("/v1/datasets", content=orjson.dumps(body),
                      headers={"content-type": "application/json"}).status_code == 201
        with app.state.sessionmaker() as session:
            assert quotas.usage(session, app.state.settings, owner="default")["stored_bytes"] == 2 * size


# -- 413: parameters per network ---------------------------------------------------------------------------------

def test_params_quota_413_on_create_with_input_dim(tmp_path):
    app = _app(tmp_path, quota_max_params=200)
    with TestClient(app) as c:
        ok = c.post("/v1/networks", json=mlp_spec(3, hidden=8, input_dim=4))          # 4*8+8 + 8*3+3 = 67
        assert ok.status_code == 201 and ok.json()["n_params"] == 67
        r = c.post("/v1/networks", json=mlp_spec(3, hidden=64, input_dim=4))          # 515
        assert r.status_code == 413, r.text
        assert r.json() == {"detail": "quota exceeded: the network has 515 parameters, more than the limit "
                                      "quota_max_params (MLP_QUOTA_MAX_PARAMS)=200 for tenant default"}
        assert c.get("/v1/networks").json()["total"] == 1


def test_params_quota_413_at_job_time_without_input_dim(tmp_path):
    app = _app(tmp_path, quota_max_params=200)
    with TestClient(app) as c:
        net = post_network(c, mlp_spec(3, hidden=16))           # no input_dim: 16*3+3 = 51 known so far
        X, y = blobs(n=60, d=20)                                 # 20*16+16 + 51 = 387 with this data set
        ds = post_dataset(c, X, y)
        r = _job(c, net, ds)
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == ("quota exceeded: the network has 387 parameters, more than the limit "
                                      "quota_max_params (MLP_QUOTA_MAX_PARAMS)=200 for tenant default")
        assert c.get("/v1/jobs").json()["total"] == 0


def test_no_quotas_by_default(tmp_path):
    s = Settings(data_dir=tmp_path / "d")
    assert all(getattr(s, name) is None for name in quotas.NAMES) and s.tenant_quotas == {}


@pytest.mark.parametrize("name", quotas.NAMES)
def test_every_quota_is_a_setting(name):
    assert name in Settings.model_fields


def test_jobs_quota_holds_under_concurrent_creates(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    app = _app(tmp_path, quota_max_jobs=3)
    with TestClient(app) as c:
        X, y = blobs(n=60)
        net, ds = post_network(c, mlp_spec(3)), post_dataset(c, X, y)
        with ThreadPoolExecutor(12) as pool:
            codes = sorted(pool.map(lambda _: _job(c, net, ds).status_code, range(12)))
        assert codes == [202] * 3 + [429] * 9
        assert c.get("/v1/jobs").json()["total"] == 3
