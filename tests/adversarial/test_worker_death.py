"""Embedded worker death: the replacement worker resumes the job from its last epoch checkpoint; a job whose
worker keeps dying fails with a message after MLP_MAX_JOB_ATTEMPTS attempts instead of looping forever."""

from __future__ import annotations

import os
import signal
import time

from tests.service.test_durability import _job_body, _setup, _wait


def _kill_worker_when_running(srv, http, job_id: str, epoch: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        kids = srv.children()
        if job["status"] == "running" and job["progress"]["epoch"] >= epoch and kids:
            os.kill(kids[0], signal.SIGKILL)
            return kids[0]
        assert time.monotonic() < deadline, f"job never reached epoch {epoch}: {job}"
        time.sleep(0.05)


def test_dead_worker_hands_its_job_to_the_replacement_which_resumes_it(live_server):
    srv = live_server(workers=1)
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=3000)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=8)).json()["id"]
        dead = _kill_worker_when_running(srv, http, job_id, epoch=2)
        job = _wait(http, job_id, timeout=90)
        assert job["status"] == "succeeded", job
        assert job["attempt"] == 2 and job["model_id"]
        epochs = [m["epoch"] for m in http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]]
        assert epochs == list(range(1, 9))       # every epoch once: resumed, not restarted or repeated
        assert dead not in srv.children()


def test_job_that_kills_every_worker_fails_after_the_attempt_limit(live_server):
    srv = live_server(workers=1, env={"MLP_MAX_JOB_ATTEMPTS": "2"})
    with srv.client() as http:
        net_id, ds_id, _ = _setup(http, n=3000)
        job_id = http.post("/v1/jobs", json=_job_body(net_id, ds_id, epochs=1000)).json()["id"]
        _kill_worker_when_running(srv, http, job_id, epoch=1)
        deadline = time.monotonic() + 30
        while http.get(f"/v1/jobs/{job_id}").json()["attempt"] < 2:   # resumed by the replacement
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker = _kill_worker_when_running(srv, http, job_id, epoch=1)
        job = _wait(http, job_id, timeout=30)
        assert job["status"] == "failed", job
        assert job["error"] == (f"the worker process (pid {worker}) was killed by signal SIGKILL while training "
                                "this job. It was tried 2 times (MLP_MAX_JOB_ATTEMPTS=2); each time the worker "
                                "died.")
