"""The app factory, health endpoints, error mapping, settings, storage, database and CLI."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
from sqlalchemy import text

from service import errors
from service.auth import get_owner
from service.cli import main
from service.database import make_engine
from service.settings import Settings
from service.storage import LocalStorage
from tests.service.helpers import ROOT, UNKNOWN_ID, assert_same_404, blobs, mlp_spec, serve_command


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_each_check(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "executor": "ok"}}


@pytest.mark.settings(prestart_workers=True)
def test_readyz_is_503_until_the_prestarted_worker_is_warm(client):
    deadline = time.monotonic() + 60
    while (r := client.get("/readyz")).status_code == 503:
        assert r.json()["checks"]["executor"] == "starting: worker processes are warming up", r.text
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "executor": "ok"}}
    assert len(client.app.state.executor.worker_pids()) == 1


@pytest.mark.settings(prestart_workers=True)
def test_readyz_says_starting_before_the_first_worker_is_spawned(app, monkeypatch):
    """The window between start-up and the monitor thread's first spawn is 'starting', not 'not running'
    (a loaded CI machine once asked /readyz inside it)."""
    import threading

    from fastapi.testclient import TestClient

    from service.executor.embedded import EmbeddedExecutor

    release = threading.Event()
    spawn = EmbeddedExecutor._spawn

    def held_spawn(self, slot):
        release.wait(30)
        spawn(self, slot)

    monkeypatch.setattr(EmbeddedExecutor, "_spawn", held_spawn)
    with TestClient(app) as c:
        try:
            r = c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["executor"] == "starting: worker processes are warming up", r.text
        finally:
            release.set()


def test_readyz_is_503_when_the_executor_is_down(client):
    client.app.state.executor.stop()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["executor"] == "error: executor is not running"


def test_app_serves_every_domain(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/networks", "/v1/datasets", "/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/models/{model_id}/predict",
              "/healthz", "/readyz"):
        assert p in paths


@pytest.mark.parametrize("exc,status", [
    (errors.NotFound("thing x not found"), 404), (errors.Conflict("busy"), 409),
    (errors.InvalidInput("field: bad"), 422), (errors.TooLarge("too big"), 413),
    (errors.UnsupportedMediaType("no"), 415), (errors.TooManyRequests("slow down"), 429),
    (errors.Unauthorized(), 401)])
def test_service_errors_map_to_status_and_detail(app, exc, status):
    from fastapi.testclient import TestClient

    @app.get("/boom")
    def boom():
        raise exc

    with TestClient(app) as c:
        r = c.get("/boom")
    assert r.status_code == status
    assert r.json() == {"detail": exc.detail}
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/v1/networks", "/v1/jobs", "/v1/sweeps", f"/v1/models/{UNKNOWN_ID}/predictions"])
@pytest.mark.parametrize("content_type, body, sent", [
    (None, b'{"layers": []}', "no Content-Type"),
    ("application/x-www-form-urlencoded", b'{"layers": []}', "Content-Type 'application/x-www-form-urlencoded'"),
    ("text/plain; charset=utf-8", b'{"layers": []}', "Content-Type 'text/plain'"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n',
     "Content-Type 'multipart/form-data'"),
])
def test_a_json_body_sent_as_another_media_type_is_415_saying_how_to_send_it(client, path, content_type, body, sent):
    """`curl -d '{...}'` without -H sends form encoding: FastAPI then does not read the body as JSON, and its
    "not a valid dictionary" 422 hid why; the answer is the README's 415 naming the Content-Type to send."""
    r = client.post(path, content=body, headers={"content-type": content_type} if content_type else {})
    assert r.status_code == 415, r.text
    assert r.json() == {"detail": f"the body was sent with {sent}; this endpoint reads a JSON object: send it with "
                                  "Content-Type: application/json (curl: -H 'content-type: application/json')"}


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.api+json"])
def test_a_json_body_with_a_json_media_type_keeps_its_422(client, content_type):
    r = client.post("/v1/networks", content=b'["not", "an", "object"]', headers={"content-type": content_type})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    r = client.post("/v1/networks", content=b"", headers={"content-type": "text/plain"})  # no body: a missing one
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "missing", r.text


def test_unknown_route_is_json_404(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_jobs_of_another_tenant_are_404(client, app, make_network, make_dataset):
    X, y = blobs()
    net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, y)
    job_id = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1}).json()["id"]
    app.dependency_overrides[get_owner] = lambda: "someone-else"
    try:
        assert_same_404(client, "get", "/v1/jobs/{}", job_id)
        assert_same_404(client, "get", "/v1/jobs/{}/metrics", job_id)
        assert_same_404(client, "post", "/v1/jobs/{}/cancel", job_id)
        assert client.get("/v1/jobs").json() == {"items": [], "total": 0}
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"]})
        unknown = client.post("/v1/jobs", json={"network_id": UNKNOWN_ID, "dataset_id": ds["id"]})
        assert r.status_code == unknown.status_code == 404  # their network is not ours
        assert r.json() == {"detail": unknown.json()["detail"].replace(UNKNOWN_ID, net["id"])}
    finally:
        app.dependency_overrides.clear()


# -- settings -------------------------------------------------------------------------------------------------
def test_settings_read_mlp_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLP_MAX_EPOCHS", "7")
    monkeypatch.setenv("MLP_WORKERS", "3")
    s = Settings()
    assert s.max_epochs == 7 and s.workers == 3 and s.data_dir == tmp_path.resolve()
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'mlp.db'}"
    assert s.storage_url == str(tmp_path.resolve() / "artifacts")
    assert s.broker_url is None and s.max_upload_bytes == 200 * 1024 * 1024


def test_settings_defaults(monkeypatch):
    for k in list(os.environ):
        if k.startswith("MLP_"):
            monkeypatch.delenv(k)
    s = Settings()
    assert s.workers == (os.cpu_count() or 1)
    assert (s.max_params, s.max_epochs, s.max_batch_size, s.max_layers) == (5_000_000, 1000, 65536, 64)
    assert s.data_dir.name == "data"


# -- database ---------------------------------------------------------------------------------------------------
def test_sqlite_engine_uses_wal_and_foreign_keys(tmp_path):
    engine = make_engine(Settings(data_dir=tmp_path))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    engine.dispose()


# -- storage ------------------------------------------------------------------------------------------------------
def test_storage_round_trips_and_is_atomic(tmp_path):
    st = LocalStorage(tmp_path / "art")
    st.write_bytes("a/b.bin", b"hello")
    assert st.exists("a/b.bin") and st.open_read("a/b.bin").read() == b"hello"
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    st.save_array("d/1/X.npy", arr)
    loaded = st.load_array("d/1/X.npy")
    assert isinstance(loaded, np.memmap) and np.array_equal(loaded, arr)
    src = tmp_path / "src.txt"
    src.write_text("copy me")
    st.put_file("c/f.txt", src)
    assert st.local_path("c/f.txt").read_text() == "copy me"
    with pytest.raises(RuntimeError):
        with st.atomic_writer("half/written.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash while writing")
    assert not st.exists("half/written.bin")
    assert list(st.local_path("half").iterdir()) == []  # no temp file left behind
    st.delete_prefix("d/1")
    assert not st.exists("d/1/X.npy")


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "", ".tmp/x"])
def test_storage_rejects_keys_outside_its_root(tmp_path, key):
    with pytest.raises(ValueError, match="invalid storage key"):
        LocalStorage(tmp_path).local_path(key)


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_help_lists_serve(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out


def test_console_script_runs():
    r = subprocess.run(serve_command() + ["--help"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "serve" in r.stdout


def test_live_server_answers_and_warns_nothing_on_loopback(live_server):
    srv = live_server(workers=1)
    with srv.client() as http:
        deadline = time.monotonic() + 30   # /readyz is 503 while the prestarted worker warms up
        while (r := http.get("/readyz")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.json()["status"] == "ready", r.text
    assert "without API keys" not in srv.log()
    assert "is not a setting" not in srv.log()


def test_serve_warns_of_mlp_variables_no_setting_reads(live_server):
    """MLP_API_KEYS (not a setting: the keys come from MLP_API_KEYS_FILE or `keys create`) left a server open
    without a word; now each unknown MLP_ variable is named at start-up with the closest setting."""
    srv = live_server(workers=0, env={"MLP_API_KEYS": "alice:secret", "MLP_WORKER": "3", "MLP_URL": "x"})
    assert srv.client().get("/healthz").status_code == 200
    log = srv.log()
    assert "MLP_API_KEYS is not a setting of mlp-service and is ignored (did you mean MLP_API_KEYS_FILE?)" in log
    assert "MLP_WORKER is not a setting of mlp-service and is ignored (did you mean MLP_WORKERS?)" in log
    assert "MLP_URL" not in log  # the client's variable
