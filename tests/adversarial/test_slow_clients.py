"""Slow clients: a request body that stalls is answered 408 within MLP_BODY_READ_TIMEOUT_SECONDS while /healthz
stays fast."""

from __future__ import annotations

import json
import select
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
        assert b"\r\nconnection: close" in head.lower(), head           # the client knows not to reuse it
        assert json.loads(body)["detail"] == ("the request body stalled: no bytes for 1 s after 12 bytes "
                                              "(MLP_BODY_READ_TIMEOUT_SECONDS)")
    assert took < 10, took                                           # not held open indefinitely


def _trickle(socks: list[socket.socket], payload: bytes, every: float, limit: float) -> list[tuple[bytes, float]]:
    """Send ``payload`` a byte at a time on every socket, one byte each ``every`` s, until the server closes each
    (or ``limit`` s pass): per socket, what the server sent and when it closed (monotonic; inf if it did not)."""
    got = {s: [b"", float("inf")] for s in socks}
    open_ = set(socks)
    end = time.monotonic() + limit
    i = 0
    while open_ and time.monotonic() < end:
        for s in list(open_):
            try:
                s.sendall(payload[i % len(payload):i % len(payload) + 1])
            except OSError:
                pass  # the server closed it; the read below sees that
        i += 1
        deadline = time.monotonic() + every
        while open_ and (wait := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(open_), [], [], wait)
            for s in ready:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                got[s][0] += chunk
                if not chunk:
                    got[s][1] = time.monotonic()
                    open_.discard(s)
    return [tuple(got[s]) for s in socks]


def test_trickled_headers_are_answered_408_within_the_header_timeout(live_server, watch):
    """Slowloris: 40 connections each send a header byte every 0.4 s (never a stall); each is answered 408 and
    closed MLP_HEADER_READ_TIMEOUT_SECONDS after it opened, and an idle connection that sends nothing is closed."""
    srv = live_server(workers=0, env={"MLP_HEADER_READ_TIMEOUT_SECONDS": "1.5"})
    with watch(srv) as w:
        t0 = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=15) for _ in range(40)]
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        for s in socks:
            s.sendall(b"GET /v1/networks HTTP/1.1\r\nHost: x\r\n")
        answers = _trickle(socks + [silent], b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n", every=0.4, limit=12)
    for s in socks + [silent]:
        s.close()
    for data, closed_at in answers[:-1]:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data
        assert json.loads(body)["detail"] == ("the request head (request line and headers) was not complete "
                                              "within 1.5 s (MLP_HEADER_READ_TIMEOUT_SECONDS)")
    assert max(closed for _, closed in answers) < t0 + 12           # all closed while the clients still trickled
    w.assert_responsive(w.baseline)
    with srv.client() as http:                                       # a well-behaved client is unaffected
        assert http.get("/v1/networks").status_code == 200


def test_trickled_bodies_are_cut_off_by_the_minimum_rate(live_server):
    """A body that sends a byte every 0.5 s never stalls for MLP_BODY_READ_TIMEOUT_SECONDS (1 s) but falls under
    MLP_BODY_MIN_RATE_BYTES_PER_SECOND: 408 naming both, for JSON bodies and multipart uploads alike; a body
    nobody reads (GET /healthz with one) is answered and its connection closed instead of trickling forever."""
    srv = live_server(workers=0, env={"MLP_BODY_READ_TIMEOUT_SECONDS": "1",
                                      "MLP_BODY_MIN_RATE_BYTES_PER_SECOND": "100"})
    heads = [b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
             b"\r\n{\"layers\": [",
             b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
             b"Content-Length: 5000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\""
             b"\r\n\r\nx,y\r\n",
             b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"]
    socks = []
    t0 = time.monotonic()
    for head in heads:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            s.sendall(head)
            socks.append(s)
    answers = _trickle(socks, b"1,2\r\n", every=0.5, limit=12)
    for s in socks:
        s.close()
    for i, (data, closed_at) in enumerate(answers):
        head, _, body = data.partition(b"\r\n\r\n")
        assert closed_at < t0 + 12, i                                # cut off while the client still trickled
        if i >= 10:                                                  # the unread body of GET /healthz
            assert head.startswith(b"HTTP/1.1 200"), data
            continue
        assert head.startswith(b"HTTP/1.1 408"), data
        assert b"\r\nconnection: close" in head.lower(), head
        detail = json.loads(body)["detail"]
        assert detail.startswith("the request body arrived too slowly: "), detail
        assert detail.endswith("a body gets 1 s plus one second per 100 bytes (MLP_BODY_READ_TIMEOUT_SECONDS, "
                               "MLP_BODY_MIN_RATE_BYTES_PER_SECOND)"), detail
    with srv.client() as http:
        assert http.get("/v1/datasets").json()["total"] == 0         # no partial upload was stored


def test_connections_past_max_connections_are_answered_503_but_healthz_is_not(live_server):
    srv = live_server(workers=0, env={"MLP_MAX_CONNECTIONS": "4", "MLP_HEADER_READ_TIMEOUT_SECONDS": "20"})
    holders = [socket.create_connection(("127.0.0.1", srv.port), timeout=15) for _ in range(4)]
    for s in holders:
        s.sendall(b"GET /v1/networks HTTP/1.1\r\nHost: x\r\n")          # a head that never completes
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        r = http.get("/v1/networks")
        assert r.status_code == 503, r.text
        assert r.json()["detail"] == ("the server is at its limit of 4 connections (MLP_MAX_CONNECTIONS); "
                                      "retry later")
        assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
        h = http.get("/healthz")                                     # liveness is still answered
        assert h.status_code == 200 and h.headers["connection"] == "close"
        for s in holders[:2]:
            s.close()
        deadline = time.monotonic() + 10                             # under the limit again once the server
        while (code := http.get("/v1/networks").status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.1)                                          # has seen the two close
        assert code == 200
    for s in holders[2:]:
        s.close()


def test_body_pieces_reach_the_app_whole_and_in_order(live_server):
    """uvicorn's body buffer replaced by one that keeps the pieces (service.connections._Pieces): a single piece is
    passed on as it is, several are joined; an upload sent in 997-byte pieces is stored whole."""
    from service.connections import _Pieces

    p = _Pieces()
    piece = bytes(range(200))
    p += piece
    assert len(p) == 200 and bytes(p) is piece
    p += b"xyz"
    assert len(p) == 203 and bytes(p) == piece + b"xyz"

    srv = live_server(workers=0)
    csv = b"a,b,label\n" + b"".join(b"%d,%d,%d\n" % (i, 2 * i, i % 2) for i in range(5000))
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\n" + csv + b"\r\n--b--\r\n")
    head = (b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head)
        for i in range(0, len(body), 997):
            s.sendall(body[i:i + 997])
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status, _, payload = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 201"), answer[:500]
    got = json.loads(payload)
    assert got["n_samples"] == 5000
    assert got["columns"][0]["max"] == 4999 and got["columns"][1]["mean"] == 4999.0
