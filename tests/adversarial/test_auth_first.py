"""Work bounded before it is authorised: the key is checked before a body is read, bodies have a limit per
endpoint, and a wrong secret for a known key id costs what an unknown id costs (no scrypt per guess)."""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.keys import service as keys_service
from service.settings import Settings

KEY = "erin-key-0123456789abcdef"


def _raw_request(port: int, head: str, body_prefix: bytes, timeout: float = 5.0) -> bytes:
    """Send a request head and only the start of its body; return what the server answers before the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + body_prefix)
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("path", ["/v1/networks", "/v1/jobs", "/v1/datasets"])
def test_no_key_is_a_401_before_the_body_is_read(live_server, watch, tmp_path, path):
    """A 250 MB body announced without a key: the 401 comes back while the body is still unsent, and the
    server neither grows nor stalls."""
    keys = tmp_path / "keys"
    keys.write_text(f"erin:{KEY}\n")
    srv = live_server(workers=0, env={"MLP_API_KEYS_FILE": str(keys)})
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 250000000\r\n\r\n"
    _raw_request(srv.port, head, b"{")  # warm-up: the first request of a process imports and builds lazily
    with watch(srv) as w:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            t0 = time.monotonic()
            answer = _raw_request(srv.port, head, b'{"name": "' + b"a" * 60_000)
            assert time.monotonic() - t0 < 3.0
            assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
            assert b"missing API key" in answer
            time.sleep(0.01)
    w.assert_responsive(w.baseline)
    assert w.peak_rss < 400 * 2**20, f"server RSS {w.peak_rss / 2**20:.0f} MiB"


@pytest.mark.parametrize("path", ["/v1/networks", "/v1/jobs"])
def test_json_body_over_the_endpoint_limit_is_a_413(tmp_path, path):
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, max_json_body_bytes=10_000))
    with TestClient(app) as c:
        body = b'{"name": "' + b"x" * 20_000 + b'"}'
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == (f"the body exceeds the limit of 10,000 bytes for POST {path} "
                                      "(MLP_MAX_JSON_BODY_BYTES)")

        def chunks():  # no Content-Length: refused while streaming
            for _ in range(30):
                yield b" " * 1000
        r = c.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text


def test_default_json_body_limit_is_one_mebibyte(client):
    r = client.post("/v1/networks", content=b" " * (2**20 + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1,048,576 bytes" in r.json()["detail"]


def test_wrong_secrets_for_a_known_id_cost_no_more_scrypt_than_unknown_ids(tmp_path, monkeypatch):
    """200 guesses at a known id's secret run scrypt once, like 200 unknown ids (zero); the right key still
    works once the short back-off has passed."""
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, api_key_recheck_seconds=0))
    with app.state.sessionmaker() as session:
        row, key = keys_service.create(session, tenant="alice")
    from service import auth

    monkeypatch.setattr(auth, "BAD_SECRET_SECONDS", 60.0)  # the whole loop in one back-off window, however slow
    calls = []
    real = keys_service.hash_secret
    monkeypatch.setattr(keys_service, "hash_secret", lambda *a, **k: calls.append(1) or real(*a, **k))
    with TestClient(app) as c:
        for i in range(200):
            r = c.get("/v1/jobs", headers={"Authorization": f"Bearer mlp_{row.id}_wrong{i:040d}"})
            assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        guesses = len(calls)
        for i in range(200):
            r = c.get("/v1/jobs", headers={"Authorization": f"Bearer mlp_{i:012x}_wrong{i:040d}"})
            assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        assert len(calls) == guesses == 1
        monkeypatch.setattr(auth, "BAD_SECRET_SECONDS", 0.0)
        assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
