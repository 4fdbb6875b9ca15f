"""API keys and tenant isolation: two tenants on every endpoint, 401s, revocation, the keys file and CLI."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import auth, cli
from service.app import create_app
from service.keys import service as keys_service
from service.settings import Settings
from tests.service.helpers import (UNKNOWN_ID, Tenant, add_keys, assert_same_404, bearer, blobs, mlp_spec,
                                  post_dataset, post_network, train_blobs, wait_job)


@pytest.fixture
def keyed(tmp_path):
    """An app with two tenants' keys in the database; keys are re-checked on every request."""
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1, api_key_recheck_seconds=0))
    keys = add_keys(app, "alice", "bob")
    with TestClient(app) as client:
        yield {"app": app, "client": client, "alice": Tenant(client, keys["alice"]), "bob": Tenant(client, keys["bob"]),
               "ids": {t: keys_service.split_key(k)[0] for t, k in keys.items()}, "keys": keys}


# -- 401 -------------------------------------------------------------------------------------------------------

ENDPOINTS = [("get", "/v1/networks"), ("post", "/v1/networks"), ("get", f"/v1/networks/{UNKNOWN_ID}"),
             ("delete", f"/v1/networks/{UNKNOWN_ID}"), ("get", "/v1/datasets"), ("post", "/v1/datasets"),
             ("get", f"/v1/datasets/{UNKNOWN_ID}"), ("delete", f"/v1/datasets/{UNKNOWN_ID}"), ("get", "/v1/jobs"),
             ("post", "/v1/jobs"), ("get", f"/v1/jobs/{UNKNOWN_ID}"), ("get", f"/v1/jobs/{UNKNOWN_ID}/metrics"),
             ("get", f"/v1/jobs/{UNKNOWN_ID}/events"), ("post", f"/v1/jobs/{UNKNOWN_ID}/cancel"),
             ("delete", f"/v1/jobs/{UNKNOWN_ID}"),
             ("get", "/v1/models"), ("get", f"/v1/models/{UNKNOWN_ID}"), ("delete", f"/v1/models/{UNKNOWN_ID}"),
             ("post", f"/v1/models/{UNKNOWN_ID}/predict")]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_every_endpoint_is_401_without_a_key(keyed, method, path):
    r = getattr(keyed["client"], method)(path)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": "missing API key: send the header 'Authorization: Bearer <key>'"}


@pytest.mark.parametrize("header", ["Bearer mlp_0123456789ab_wrongsecret", "Bearer nonsense", "Basic YWxpY2U6eA==",
                                    "Bearer " + "x" * 5000])
def test_wrong_key_is_401_and_never_echoed(keyed, caplog, header):
    caplog.set_level(logging.DEBUG)
    r = keyed["client"].get("/v1/networks", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    secret = header.split(" ", 1)[1]
    assert secret not in r.text and secret not in caplog.text


def test_a_key_with_a_real_id_and_a_wrong_secret_is_401(keyed):
    key_id = keyed["ids"]["alice"]
    r = keyed["client"].get("/v1/networks", headers=bearer(f"mlp_{key_id}_not-the-secret"))
    assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}


def test_bob_cannot_use_alices_key_id_with_his_secret(keyed):
    bob_secret = keyed["keys"]["bob"].split("_", 2)[2]
    r = keyed["client"].get("/v1/networks", headers=bearer(f"mlp_{keyed['ids']['alice']}_{bob_secret}"))
    assert r.status_code == 401


def test_health_and_docs_need_no_key(keyed):
    c = keyed["client"]
    deadline = time.monotonic() + 30       # /readyz is 503 (not 401) while the prestarted worker warms up
    while (r := c.get("/readyz")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"):
        assert c.get(path).status_code == 200, path
    schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer", "description": auth.bearer.model.description}


def test_revoked_key_is_401_and_the_other_keys_still_work(keyed):
    alice, bob = keyed["alice"], keyed["bob"]
    assert alice.get("/v1/networks").status_code == 200
    with keyed["app"].state.sessionmaker() as session:
        keys_service.revoke(session, key_id=keyed["ids"]["alice"])
    r = alice.get("/v1/networks")
    assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}
    assert bob.get("/v1/networks").status_code == 200


def test_revocation_reaches_a_server_within_the_recheck_interval(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, api_key_recheck_seconds=0.3))
    with app.state.sessionmaker() as session:
        row, key = keys_service.create(session, tenant="carol")
    with TestClient(app) as c:
        assert c.get("/v1/jobs", headers=bearer(key)).status_code == 200
        with app.state.sessionmaker() as session:   # as `mlp-service keys revoke` does from another process
            keys_service.revoke(session, key_id=row.id)
        time.sleep(0.35)
        assert c.get("/v1/jobs", headers=bearer(key)).status_code == 401


def test_keys_created_while_running_switch_auth_on(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, api_key_recheck_seconds=0))
    with TestClient(app) as c:
        assert c.get("/v1/networks").status_code == 200          # no keys: the implicit tenant
        with app.state.sessionmaker() as session:
            _, key = keys_service.create(session, tenant="dave")
        assert c.get("/v1/networks").status_code == 401
        assert c.get("/v1/networks", headers=bearer(key)).status_code == 200


def test_revoking_every_key_does_not_reopen_the_server(keyed):
    with keyed["app"].state.sessionmaker() as session:
        for key_id in keyed["ids"].values():
            keys_service.revoke(session, key_id=key_id)
    assert keyed["client"].get("/v1/networks").status_code == 401


def test_keys_are_stored_only_as_salted_hashes(keyed):
    db = (keyed["app"].state.settings.data_dir / "mlp.db").read_bytes()
    wal = keyed["app"].state.settings.data_dir / "mlp.db-wal"
    db += wal.read_bytes() if wal.exists() else b""
    with keyed["app"].state.sessionmaker() as session:
        rows = keys_service.list_(session)
    assert len({r.salt for r in rows}) == len(rows) == 2
    for key in keyed["keys"].values():
        secret = key.split("_", 2)[2].encode()
        assert secret not in db and key.encode() not in db


# -- isolation ---------------------------------------------------------------------------------------------------

def test_two_tenants_see_only_their_own_everywhere(keyed):
    alice, bob = keyed["alice"], keyed["bob"]
    a = train_blobs(alice)
    net_id, ds_id, job_id, model_id = a["network"]["id"], a["dataset"]["id"], a["job"]["id"], a["model_id"]
    bob_net = post_network(bob, mlp_spec(3))

    # lists: each tenant sees only its own
    for path in ("/v1/networks", "/v1/datasets", "/v1/jobs", "/v1/models"):
        assert bob.get(path).json()["total"] == (1 if path == "/v1/networks" else 0), path
        assert alice.get(path).json()["total"] == 1, path
    assert bob.get("/v1/networks").json()["items"][0]["id"] == bob_net["id"]
    assert bob.get("/v1/models", params={"job_id": job_id}).json()["total"] == 0

    # every read, delete, action on alice's ids: exactly the 404 of an unknown id
    def same_404(method, path_tpl, the_id, kind, **kw):
        assert_same_404(bob, method, path_tpl, the_id, **kw)
        unknown = getattr(bob, method)(path_tpl.format(UNKNOWN_ID), **kw)
        assert unknown.json() == {"detail": f"{kind} {UNKNOWN_ID} not found"}

    same_404("get", "/v1/networks/{}", net_id, "network")
    same_404("delete", "/v1/networks/{}", net_id, "network")
    same_404("get", "/v1/datasets/{}", ds_id, "dataset")
    same_404("delete", "/v1/datasets/{}", ds_id, "dataset")
    same_404("get", "/v1/jobs/{}", job_id, "job")
    same_404("get", "/v1/jobs/{}/metrics", job_id, "job")
    same_404("get", "/v1/jobs/{}/events", job_id, "job")
    same_404("post", "/v1/jobs/{}/cancel", job_id, "job")
    same_404("delete", "/v1/jobs/{}", job_id, "job")
    same_404("get", "/v1/models/{}", model_id, "model")
    same_404("delete", "/v1/models/{}", model_id, "model")
    same_404("post", "/v1/models/{}/predict", model_id, "model", json={"inputs": a["X"][:2].tolist()})

    # bob cannot train on alice's network or data set
    X, y = blobs(n=60)
    bob_ds = post_dataset(bob, X, y)
    r = bob.post("/v1/jobs", json={"network_id": net_id, "dataset_id": bob_ds["id"], "epochs": 1})
    assert r.status_code == 404 and r.json() == {"detail": f"network {net_id} not found"}
    r = bob.post("/v1/jobs", json={"network_id": bob_net["id"], "dataset_id": ds_id, "epochs": 1})
    assert r.status_code == 404 and r.json() == {"detail": f"dataset {ds_id} not found"}
    r = bob.post("/v1/jobs", json={"network_id": bob_net["id"], "dataset_id": bob_ds["id"], "epochs": 1,
                                   "validation_dataset_id": ds_id})
    assert r.status_code == 404 and r.json() == {"detail": f"dataset {ds_id} not found"}

    # alice still has everything, and her model predicts (the model cache is per tenant)
    for path in (f"/v1/networks/{net_id}", f"/v1/datasets/{ds_id}", f"/v1/jobs/{job_id}",
                 f"/v1/models/{model_id}", f"/v1/jobs/{job_id}/metrics"):
        assert alice.get(path).status_code == 200, path
    r = alice.post(f"/v1/models/{model_id}/predict", json={"inputs": a["X"][:3].tolist()})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    with alice.stream("GET", f"/v1/jobs/{job_id}/events") as s:
        assert s.status_code == 200 and b"event: end" in b"".join(s.iter_bytes())
    # ... and only after that does bob's 404 on predict hold with alice's model cached
    r = bob.post(f"/v1/models/{model_id}/predict", json={"inputs": a["X"][:3].tolist()})
    assert r.status_code == 404


def test_delete_in_use_is_409_and_delete_removes_the_tenants_files(keyed):
    alice, bob = keyed["alice"], keyed["bob"]
    storage = keyed["app"].state.storage
    X, y = blobs(n=2000, d=8)
    net = post_network(alice, mlp_spec(3, hidden=64))
    ds = post_dataset(alice, X, y)
    r = alice.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1000,
                                     "batch_size": 8})
    job_id = r.json()["id"]
    try:
        for path, kind in ((f"/v1/datasets/{ds['id']}", "dataset"), (f"/v1/networks/{net['id']}", "network")):
            r = alice.delete(path)
            assert r.status_code == 409, r.text
            assert r.json()["detail"].startswith(f"{kind} ") and f"used by job {job_id}" in r.json()["detail"]
            assert bob.delete(path).status_code == 404
    finally:
        assert alice.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    wait_job(alice, job_id)
    assert storage.exists(f"datasets/{ds['id']}/X.npy")
    assert alice.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert alice.delete(f"/v1/networks/{net['id']}").status_code == 204
    assert not storage.local_path(f"datasets/{ds['id']}").exists()

    trained = train_blobs(alice)
    key = f"models/{trained['model_id']}/model.npz"
    assert storage.exists(key)
    assert bob.delete(f"/v1/models/{trained['model_id']}").status_code == 404 and storage.exists(key)
    assert alice.delete(f"/v1/models/{trained['model_id']}").status_code == 204
    assert not storage.local_path(f"models/{trained['model_id']}").exists()


# -- MLP_API_KEYS_FILE ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    "# tenants\nerin:erin-key-0123456789abcdef\n\nfrank: frank-key-0123456789abcdef\n",
    '{"erin": "erin-key-0123456789abcdef", "frank": ["frank-key-0123456789abcdef"]}',
    '[{"tenant": "erin", "key": "erin-key-0123456789abcdef"},'
    ' {"tenant": "frank", "key": "frank-key-0123456789abcdef"}]',
])
def test_keys_file_lines_or_json(tmp_path, content):
    path = tmp_path / "keys"
    path.write_text(content)
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, api_keys_file=path))
    with TestClient(app) as c:
        assert c.get("/v1/networks").status_code == 401
        erin, frank = bearer("erin-key-0123456789abcdef"), bearer("frank-key-0123456789abcdef")
        r = c.post("/v1/networks", json=mlp_spec(2), headers=erin)
        assert r.status_code == 201
        assert c.get("/v1/networks", headers=erin).json()["total"] == 1
        assert c.get("/v1/networks", headers=frank).json()["total"] == 0
        assert c.get(f"/v1/networks/{r.json()['id']}", headers=frank).status_code == 404
        assert c.get("/v1/networks", headers=bearer("erin-key-0123456789abcdeX")).status_code == 401
    ring = app.state.keyring
    assert all(len(d) == 32 for d in ring.file_keys)  # only HMAC digests are kept


@pytest.mark.parametrize("content,message", [
    ("erin\n", "line 1 is not 'tenant:key'"),
    ("# keys\nerin:short\n", "line 2: the key must be a string of at least 16 characters"),
    ("bad name:0123456789abcdef01\n", "line 1: the tenant is not a valid tenant name"),
    ("# nothing\n", "no keys in the file"),
    ('{"erin": 5}', "entry 1: the key must be"),
    # fields swapped: the key stands where the tenant goes, and is not shown
    ("erin:erin-key-0123456789abcdef01\nmlp_0123456789abcdef01:frank\n", "line 2: the key must be a string"),
    ('[{"tenant": "0123456789abcdef01 x", "key": "erin"}]', "entry 1: the tenant is not a valid tenant name"),
])
def test_bad_keys_file_fails_without_showing_keys(tmp_path, content, message):
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ValueError) as info:  # create_app reads the file: a bad one stops it
        create_app(Settings(data_dir=tmp_path / "d", workers=0, api_keys_file=path))
    assert message in str(info.value)
    assert "0123456789abcdef01" not in str(info.value)


def test_serve_refuses_a_bad_keys_file(tmp_path, monkeypatch, caplog):
    path = tmp_path / "keys"
    path.write_text("nonsense\n")
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MLP_API_KEYS_FILE", str(path))
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("must not start"))
    assert cli.main(["serve"]) == 2
    assert "cannot read the API keys" in caplog.text


# -- CLI ------------------------------------------------------------------------------------------------------

def test_cli_keys_create_list_revoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "d"))
    assert cli.main(["keys", "create", "--tenant", "gina"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    key_id = key.split("_")[1]
    assert key.startswith("mlp_") and f"created key {key_id} for tenant gina" in err
    assert cli.main(["keys", "list"]) == 0
    out, _ = capsys.readouterr()
    assert key_id in out and "gina" in out and "active" in out and key.split("_", 2)[2] not in out

    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, api_key_recheck_seconds=0))
    with TestClient(app) as c:
        assert c.get("/v1/jobs", headers=bearer(key)).status_code == 200
        assert cli.main(["keys", "revoke", key_id]) == 0
        assert c.get("/v1/jobs", headers=bearer(key)).status_code == 401
    capsys.readouterr()
    assert cli.main(["keys", "list", "--tenant", "gina"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["keys", "revoke", "ffffffffffff"]) == 1
    assert "API key ffffffffffff not found" in capsys.readouterr().err
    assert cli.main(["keys", "create", "--tenant", "no spaces"]) == 1
    assert "not a valid tenant name" in capsys.readouterr().err


@pytest.mark.parametrize("host,keys,warns", [("0.0.0.0", False, True), ("0.0.0.0", True, False),
                                             ("127.0.0.1", False, False)])
def test_serve_warns_beyond_loopback_without_keys(tmp_path, monkeypatch, caplog, host, keys, warns):
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MLP_WORKERS", "0")
    if keys:
        assert cli.main(["keys", "create", "--tenant", "hal"]) == 0
    ran = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: ran.append(kw["host"]))
    caplog.set_level(logging.WARNING)
    assert cli.main(["serve", "--host", host, "--port", "1"]) == 0
    assert ran == [host]
    assert ("without API keys" in caplog.text) is warns


def test_default_tenant_without_keys_needs_no_header(client):
    assert client.get("/v1/networks").status_code == 200
    r = client.post("/v1/networks", json=mlp_spec(2), headers=bearer("ignored-when-no-keys"))
    assert r.status_code == 201
    assert np.isclose(client.get("/v1/networks").json()["total"], 1)
