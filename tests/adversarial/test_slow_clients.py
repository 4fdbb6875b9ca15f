"""Slow clients: a request body that stalls is answered 408 within MLP_BODY_READ_TIMEOUT_SECONDS while /healthz
stays fast."""

from __future__ import annotations

import json
import socket
import time

import httpx


def test_stalled_bodies_are_answered_408_and_closed(live_server):
    srv = live_server(workers=0, env={"MLP_BODY_READ_TIMEOUT_SECONDS": "1"})
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        s.sendall(b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 500\r\n\r\n{\"layers\": [")
        socks.append(s)
    t0 = time.monotonic()
    assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
    answers = []
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        answers.append(data)
        s.close()
    took = time.monotonic() - t0
    for data in answers:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data
        assert json.loads(body)["detail"] == ("the request body stalled: no bytes for 1 s after 12 bytes "
                                              "(MLP_BODY_READ_TIMEOUT_SECONDS)")
    assert took < 10, took                                           # not held open indefinitely
