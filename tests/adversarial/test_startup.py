"""Workers start with the server: /readyz answers ready only once the worker processes are up and warm, so the
first job does not wait in ``queued`` while processes spawn; SIGTERM to the whole process group (server and
workers) does not respawn workers and the server exits within 3 s."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime

from tests.service.test_durability import _job_body, _setup, _wait


def _ready(srv, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with srv.client() as http:
        while True:
            r = http.get("/readyz")
            if r.status_code == 200:
                return r.json()
            assert r.status_code == 503, r.text
            assert r.json()["checks"]["executor"] in ("ok", "starting: worker processes are warming up"), r.text
            assert time.monotonic() < deadline, r.text
            time.sleep(0.05)


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_workers_are_up_and_warm_before_readyz_and_the_first_job_starts_at_once(live_server):
    srv = live_server(workers=1)
    assert _ready(srv)["checks"]["executor"] == "ok"
    workers = srv.children()
    assert len(workers) == 1                                        # spawned at start-up, before any job
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=300)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=1)).json()["id"]
        job = _wait(http, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    waited = (_ts(job["started_at"]) - _ts(job["created_at"])).total_seconds()
    assert waited < 1.0, job                                        # was 3-4 s of spawning and imports
    assert srv.children() == workers                                # the warm worker took it


def test_sigterm_to_the_process_group_stops_without_respawning_and_exits_within_3s(live_server):
    srv = live_server(workers=2)
    _ready(srv)
    workers = srv.children()
    assert len(workers) == 2
    t0 = time.monotonic()
    for pid in [srv.proc.pid] + workers:                            # what `kill -TERM -<pgid>` delivers
        os.kill(pid, signal.SIGTERM)
    srv.proc.wait(timeout=10)
    took = time.monotonic() - t0
    log = srv.log()
    assert took < 3.0, (took, log)
    assert log.count("started worker process") == 2, log            # none respawned while shutting down
    assert "while training" not in log and "handed to its replacement" not in log, log
