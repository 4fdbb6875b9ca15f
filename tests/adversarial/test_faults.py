"""Faults of the machine: temporary files a kill -9 left behind are swept at start-up, a full disk is a 507
with a JSON detail while deletes still work, a multipart body cut before its closing boundary is a 422, and
/readyz does not write per request."""

from __future__ import annotations

import errno
import sqlite3
import threading
import time

import httpx
import sqlalchemy.exc
from sqlalchemy.orm import Session

from service import faults
from tests.service.helpers import blobs, mlp_spec


def _tmp_files(data_dir):
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and
                  (p.name.endswith(".tmp") or p.name.startswith("upload-")))


def test_kill9_mid_upload_leaves_temporaries_that_the_next_start_sweeps(live_server):
    srv = live_server(workers=0)
    sent = threading.Event()

    def body():
        yield b"a,b,label\n"
        for i in range(400):
            yield b"1.0,2.0,x\n" * 5000
            if i == 40:
                sent.set()
            time.sleep(0.02)

    # A multipart upload streamed slowly: the server writes it to a temporary file as it arrives.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()

    def multipart():
        yield head
        yield from body()

    def post_multipart():
        try:
            httpx.post(srv.url + "/v1/datasets", content=multipart(), timeout=30,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=post_multipart, daemon=True)
    t.start()
    assert sent.wait(20)
    time.sleep(0.3)
    srv.kill9()
    left = _tmp_files(srv.data_dir)
    assert left and sum(p.stat().st_size for p in left) > 1_000_000, left
    # a partial atomic write of an artifact, as a worker killed mid-checkpoint leaves it
    partial = srv.data_dir / "artifacts" / "datasets" / "abc" / "X.npy.k2j3h4.tmp"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)
    keep = partial.parent / "X.npy"
    keep.write_bytes(b"kept")
    srv.start()
    assert _tmp_files(srv.data_dir) == []
    assert keep.read_bytes() == b"kept"
    assert srv.client().get("/healthz").status_code == 200


def test_sweep_spares_recent_temporaries_when_scaled_out(tmp_path):
    from service.settings import Settings
    from service.storage import make_storage

    settings = Settings(data_dir=tmp_path / "d", workers=0, broker_url="redis://127.0.0.1:1/0")
    storage = make_storage(settings)
    fresh = storage.temp_dir() / "upload-fresh.csv"
    fresh.write_bytes(b"x")
    old = storage.temp_dir() / "upload-old.csv"
    old.write_bytes(b"x")
    import os
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert faults.sweep_temporaries(storage, settings) == 1
    assert fresh.exists() and not old.exists()


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_a_507_with_json_detail_and_deletes_still_work(app, monkeypatch):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        _disk_full(client, monkeypatch)


def _disk_full(client, monkeypatch):
    X, y = blobs(n=60)
    r = client.post("/v1/datasets", json={"name": "keep", "X": X.tolist(), "y": y.tolist()})
    assert r.status_code == 201
    ds_id = r.json()["id"]
    net_id = client.post("/v1/networks", json=mlp_spec(3)).json()["id"]
    storage = client.app.state.storage
    monkeypatch.setattr(type(storage), "save_array", _enospc)
    monkeypatch.setattr(type(storage), "write_bytes", _enospc)
    r = client.post("/v1/datasets", json={"name": "more", "X": X.tolist(), "y": y.tolist()})
    assert r.status_code == 507, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["detail"].startswith("the server is out of disk space: nothing was stored")
    r = client.post("/v1/datasets", files={"file": ("a.npz", b"PK", "application/octet-stream")})
    assert r.status_code in (422, 507)  # whichever comes first; never a plain-text 500

    # the database full too (SQLite's SQLITE_FULL through SQLAlchemy)
    def db_full(self):
        orig = sqlite3.OperationalError("database or disk is full")
        orig.sqlite_errorcode = faults.SQLITE_FULL
        raise sqlalchemy.exc.OperationalError("INSERT ...", {}, orig)

    real_commit = Session.commit
    monkeypatch.setattr(Session, "commit", db_full)
    r = client.post("/v1/networks", json=mlp_spec(3))
    assert r.status_code == 507 and r.json()["detail"] == faults.DISK_FULL_DETAIL
    monkeypatch.setattr(Session, "commit", real_commit)
    # deletes free space
    assert client.delete(f"/v1/datasets/{ds_id}").status_code == 204
    assert client.delete(f"/v1/networks/{net_id}").status_code == 204
    assert client.get(f"/v1/datasets/{ds_id}").status_code == 404


def test_multipart_body_cut_before_its_closing_boundary_is_a_422(client):
    rows = "".join(f"{i}.0,{i % 2}\n" for i in range(100))
    head = ('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
            'Content-Type: text/csv\r\n\r\nx,label\n')
    whole = (head + rows + "\r\n--XyZ--\r\n").encode()
    cut = (head + rows[: len(rows) // 2]).encode()

    def chunked(data):
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    ctype = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    r = client.post("/v1/datasets", content=chunked(cut), headers=ctype)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("malformed multipart body: it ended before its closing boundary")
    assert client.get("/v1/datasets").json()["total"] == 0
    r = client.post("/v1/datasets", content=chunked(whole), headers=ctype)
    assert r.status_code == 201 and r.json()["n_samples"] == 100


def test_readyz_does_not_write_per_request(client, monkeypatch):
    storage = client.app.state.storage
    writes = []
    real = type(storage).write_bytes
    monkeypatch.setattr(type(storage), "write_bytes", lambda self, k, d: writes.append(k) or real(self, k, d))
    for _ in range(200):
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["storage"] == "ok"
    assert len(writes) <= 1
