"""Streams and slow clients: many open /events streams share one poller per job and leave /healthz fast; caps
per tenant and in total (429); a revoked key ends its open streams."""

from __future__ import annotations

import socket
import subprocess
import time

from tests.service.helpers import ROOT, blobs, mlp_spec, serve_command


def _queued_job(http) -> str:
    X, y = blobs(n=60)
    net = http.post("/v1/networks", json=mlp_spec(3)).json()["id"]
    ds = http.post("/v1/datasets", json={"name": "b", "X": X.tolist(), "y": y.tolist()}).json()["id"]
    r = http.post("/v1/jobs", json={"network_id": net, "dataset_id": ds, "epochs": 5})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _open_stream(port: int, job_id: str, headers: str = "") -> tuple[socket.socket, bytes]:
    return open_path(port, f"/v1/jobs/{job_id}/events", headers)


def open_path(port: int, path: str, headers: str = "") -> tuple[socket.socket, bytes]:
    """A raw GET of ``path`` left open: (the socket, the response head)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def test_200_open_streams_share_one_poller_and_leave_healthz_fast(live_server, watch):
    srv = live_server(workers=0, env={"MLP_MAX_STREAMS": "250", "MLP_MAX_STREAMS_PER_TENANT": "250"})
    http = srv.client()
    job = _queued_job(http)             # no workers: it stays queued, its streams stay open
    socks = []
    try:
        for _ in range(200):
            s, head = _open_stream(srv.port, job)
            assert head.startswith(b"HTTP/1.1 200"), head
            socks.append(s)
        with watch(srv) as w:
            time.sleep(2.0)
        w.assert_responsive(w.baseline)
        # over the total cap: 429 naming it
        extra = [_open_stream(srv.port, job) for _ in range(50)]
        socks += [s for s, _ in extra]
        s, head = _open_stream(srv.port, job)
        socks.append(s)
        assert head.startswith(b"HTTP/1.1 429"), head
        answer = head if b"MLP_MAX_STREAMS" in head else head + s.recv(4096)  # the body may come with the head
        assert b"=250 (MLP_MAX_STREAMS" in answer, answer  # names the cap (per tenant or total: both are 250)
    finally:
        for s in socks:
            s.close()
    # closed streams free their slots
    deadline = time.monotonic() + 10
    while True:
        s, head = _open_stream(srv.port, job)
        s.close()
        if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert head.startswith(b"HTTP/1.1 200"), head


def test_streams_per_tenant_cap_is_a_429(client):
    job = _queued_job(client)
    # the in-process client cannot hold streams open; the hub is asked directly, as the route does
    import anyio

    from service.errors import TooManyRequests
    from service.jobs.streams import StreamHub

    settings = client.app.state.settings.model_copy(update={"max_streams_per_tenant": 2})
    hub = StreamHub(client.app.state.sessionmaker, settings)

    async def scenario():
        a = await hub.open("default", job)
        b = await hub.open("default", job)
        assert a is b and a.listeners == 2         # one feed (one poller) for both listeners
        try:
            await hub.open("default", job)
        except TooManyRequests as exc:
            assert exc.detail.startswith("too many open event streams: tenant default has 2, the limit is "
                                         "max_streams_per_tenant=2 (MLP_MAX_STREAMS_PER_TENANT)")
        else:
            raise AssertionError("a third stream was allowed")
        hub.close(a)
        c = await hub.open("default", job)
        hub.close(b)
        hub.close(c)
        assert hub.open_total == 0

    anyio.run(scenario)


def test_revoked_key_ends_its_open_streams(live_server, tmp_path):
    srv = live_server(workers=0, env={"MLP_API_KEY_RECHECK_SECONDS": "0.5"})
    srv_env = {"MLP_DATA_DIR": str(srv.data_dir), "PYTHONPATH": str(ROOT)}
    import os
    env = dict(os.environ, **srv_env)
    out = subprocess.run(serve_command() + ["keys", "create", "--tenant", "ann"], capture_output=True, text=True,
                         env=env, timeout=60)
    key = out.stdout.strip()
    key_id = key.split("_")[1]
    http = srv.client()
    http.headers["Authorization"] = f"Bearer {key}"
    t_key = time.monotonic()
    deadline = t_key + 30
    while http.get("/v1/jobs").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    # The same server noticing a key-file change, measured under this machine's current load: the bound on
    # noticing a revocation scales with it (5 s on an idle machine).
    notice = time.monotonic() - t_key
    job = _queued_job(http)
    ds = http.get(f"/v1/jobs/{job}").json()["dataset_id"]
    sweep = http.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "space": {"epochs": 2}})
    assert sweep.status_code == 202, sweep.text   # no workers: it runs (its trials queued) until the revoke
    streams = []
    for path in (f"/v1/jobs/{job}/events", f"/v1/sweeps/{sweep.json()['id']}/events"):  # both kinds end
        s, head = open_path(srv.port, path, f"Authorization: Bearer {key}\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        streams.append(s)
    subprocess.run(serve_command() + ["keys", "revoke", key_id], check=True, env=env, timeout=60,
                   capture_output=True)
    t0 = time.monotonic()
    for s in streams:
        s.settimeout(max(10.0, 3 * notice + 5.0))
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if b"0\r\n\r\n" in data:
                break
        s.close()
        assert time.monotonic() - t0 < max(5.0, 3 * notice + 1.0), notice
        assert b"event: error" in data and b"the API key was revoked" in data, data[-300:]
        assert b"event: end" not in data
