"""The Celery executor with real servers: cancel on a remote worker, redelivered tasks, broker restarts, hints."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
from sqlalchemy import create_engine, text

from service.executor.celery import CeleryExecutor, make_celery, publish
from service.settings import Settings
from tests.distributed.conftest import job_body, setup_data, wait_job


def _db_row(db_url: str, job_id: str) -> dict:
    eng = create_engine(db_url)
    try:
        with eng.connect() as conn:
            return dict(conn.execute(text("SELECT status, attempt, worker FROM jobs WHERE id = :i"),
                                     {"i": job_id}).mappings().one())
    finally:
        eng.dispose()


def _assert_once(http: httpx.Client, job_id: str, epochs: int) -> dict:
    job = wait_job(http, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    items = http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
    assert [m["epoch"] for m in items] == list(range(1, epochs + 1))
    return job


def test_worker_trains_with_sqlite_and_readyz_checks_broker(cluster, redis_url):
    c = cluster(database_url=None, broker_url=redis_url)
    api = c.api()
    c.worker()
    with api.client() as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["executor"] == "ok", ready.text
        net_id, ds_id, _ = setup_data(http, n=600)
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 0, epochs=3, batch_size=32)).json()["id"]
        job = _assert_once(http, job_id, 3)
        assert job["attempt"] == 1 and job["model_id"]


def test_cancel_reaches_remote_worker_quickly(cluster, redis_url, postgres_url):
    c = cluster(database_url=postgres_url, broker_url=redis_url)
    api = c.api()
    c.worker()
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http)
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 1, epochs=200)).json()["id"]
        wait_job(http, job_id, cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 1)
        t0 = time.monotonic()
        r = http.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code in (200, 202), r.text
        job = wait_job(http, job_id, timeout=30)
        took = time.monotonic() - t0
        assert job["status"] == "cancelled", job
        assert job["progress"]["epoch"] < 200
        assert took < 3.0, f"cancel took {took:.2f}s to reach the worker"  # polled every 0.2 s; slack for CI load


def test_redelivered_task_does_not_make_a_second_writer(cluster, redis_url, postgres_url):
    c = cluster(database_url=postgres_url, broker_url=redis_url)
    api = c.api()
    w1, w2 = c.workers(2)
    app = make_celery(Settings(broker_url=redis_url, database_url=postgres_url, data_dir=c.data_dir))
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http)
        # 40 epochs (a few seconds): the duplicates reach the idle worker while the first one still trains.
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 2, epochs=40)).json()["id"]
        wait_job(http, job_id, cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 1)
        for _ in range(3):  # duplicates of the message while the first worker is alive and training
            publish(app, job_id)
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "running"  # still live when they were sent
        job = _assert_once(http, job_id, 40)
        assert job["attempt"] == 1, job
        models = http.get("/v1/models").json()
        assert models["total"] == 1, models
    app.close()
    # Each duplicate is dropped by whichever worker receives it; the last may still be in flight when the
    # job has already ended, so wait (bounded) for all three drops to be logged.
    deadline = time.monotonic() + 20
    while True:
        logs = w1.log() + w2.log()
        if logs.count(f"job {job_id}: not claimable") >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logs.count(f"job {job_id}: not claimable") == 3, logs


def test_broker_restart_neither_loses_nor_duplicates_jobs(cluster, redis_server, postgres_url):
    c = cluster(database_url=postgres_url, broker_url=redis_server.url)
    api = c.api()
    c.worker()
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http, n=1500)
        ids = [http.post("/v1/jobs", json=job_body(net_id, ds_id, s, epochs=6)).json()["id"] for s in range(4)]
        wait_job(http, ids[0], cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 1)
        redis_server.stop()  # SIGTERM; the append-only file is fsynced on every write
        time.sleep(2)
        redis_server.start()
        jobs = [_assert_once(http, i, 6) for i in ids]
        assert [j["attempt"] for j in jobs] == [1, 1, 1, 1], jobs
        assert http.get("/v1/models").json()["total"] == 4


def test_jobs_whose_messages_were_lost_are_republished(cluster, redis_server, postgres_url):
    # Jobs committed while the broker is down (or wiped) have no message: a worker's sweeper republishes them.
    c = cluster(database_url=postgres_url, broker_url=redis_server.url,
                extra_env={"MLP_REPUBLISH_SECONDS": "2", "MLP_SWEEP_SECONDS": "1"})
    api = c.api()
    c.worker()
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http, n=600)
        redis_server.stop()
        t0 = time.monotonic()
        r = http.post("/v1/jobs", json=job_body(net_id, ds_id, 3, epochs=3, batch_size=32))
        assert r.status_code == 202, r.text  # accepted and committed although it could not be published
        assert time.monotonic() - t0 < 15
        redis_server.start()
        job = _assert_once(http, r.json()["id"], 3)
        assert job["attempt"] == 1


def test_database_outage_neither_loses_nor_duplicates_a_job(cluster, redis_url, postgres_server):
    # A shorter lease than the default 15 s, only to keep the test short.
    c = cluster(database_url=postgres_server.url, broker_url=redis_url,
                extra_env={"MLP_LEASE_SECONDS": "6", "MLP_LEASE_HEARTBEAT_SECONDS": "1", "MLP_SWEEP_SECONDS": "1"})
    api = c.api()
    c.worker()
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http, n=1500)
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 5, epochs=20)).json()["id"]
        wait_job(http, job_id, cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 2)
        postgres_server.pause()
        time.sleep(4)
        postgres_server.resume()
        job = wait_job(http, job_id, timeout=120)
        assert job["status"] == "succeeded", f"{job}\n{c.logs()}"
        items = http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
        assert [m["epoch"] for m in items] == list(range(1, 21))
        assert http.get("/v1/models").json()["total"] == 1


def test_sigterm_hands_the_running_job_to_another_worker(cluster, redis_url):
    c = cluster(database_url=None, broker_url=redis_url)
    api = c.api()
    first = c.worker()
    with api.client() as http:
        net_id, ds_id, _ = setup_data(http, n=1500)
        job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 6, epochs=30)).json()["id"]
        wait_job(http, job_id, cond=lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 2)
        t0 = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)  # e.g. `docker compose stop` or scaling down
        first.proc.wait(timeout=30)
        assert time.monotonic() - t0 < 10, "the worker waited for the job instead of handing it back"
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        c.worker()
        job = _assert_once(http, job_id, 30)
        assert job["attempt"] == 2
    assert f"job {job_id}: handed back to the queue at shutdown" in first.log()


def test_a_worker_hints_every_listening_api_process_when_a_job_ended(cluster, redis_url, tmp_path):
    c = cluster(database_url=None, broker_url=redis_url)
    api = c.api()
    c.worker()
    heard: dict[str, list] = {"first": [], "second": []}
    both = threading.Event()

    def listener(name):
        def hear(kind, job_id):
            heard[name].append((kind, job_id))
            if all(heard.values()):
                both.set()
        return hear

    # Two API processes' executors (here: in the test process), each subscribed as the sweep driver is.
    executors = [CeleryExecutor(Settings(data_dir=tmp_path / name, broker_url=redis_url), None, None)
                 for name in heard]
    try:
        for ex, name in zip(executors, heard):
            ex.subscribe(listener(name))
        for ex in executors:  # a hint sent before a listener subscribed is not kept for it
            assert ex._hints.listening.wait(30)
        with api.client() as http:
            net_id, ds_id, _ = setup_data(http, n=300)
            job_id = http.post("/v1/jobs", json=job_body(net_id, ds_id, 0, epochs=2, batch_size=32)).json()["id"]
            job = _assert_once(http, job_id, 2)
        assert both.wait(30), heard
    finally:
        for ex in executors:
            ex.stop()
    assert job["status"] == "succeeded"
    assert heard == {"first": [("ended", job_id)], "second": [("ended", job_id)]}


class _FakeWorker:
    """What _TaskRuntime uses of a CeleryWorker: records the jobs it trains; while job ``stop_in`` trains, a SIGTERM
    arrives (``shutdown``: run_job stops at a minibatch and leaves the job queued)."""

    def __init__(self, stop_in: str | None = None):
        self.name, self.shutdown, self.trained, self.stop_in = "w1", False, [], stop_in
        self.settings = Settings(lease_heartbeat_seconds=60)

    def Session(self):  # noqa: N802 - the sessionmaker's name
        from contextlib import nullcontext
        return nullcontext(None)

    def run_job(self, job_id: str, attempt: int) -> None:
        self.trained.append((job_id, attempt))
        if job_id == self.stop_in:
            self.shutdown = True


def _runtime_with(monkeypatch, worker: _FakeWorker, queued: list[str], stop_after_hint: str | None = None):
    """A _TaskRuntime over ``worker`` whose database holds ``queued`` jobs (claimed in that order); a SIGTERM
    arrives right after the end of job ``stop_after_hint`` is hinted."""
    from service.executor import celery as ce
    sent = {"hints": [], "published": []}
    queue = list(queued)

    def claim_next(session, *, worker):
        return (queue.pop(0), 1) if queue else None

    def claim_fairest(session, *, job_id, worker, lease_seconds=None):
        return claim_next(session, worker=worker)

    def hint(app, kind, job_id):
        sent["hints"].append(job_id)
        if job_id == stop_after_hint:
            worker.shutdown = True

    monkeypatch.setattr(ce.jobs_service, "claim_next", claim_next)
    monkeypatch.setattr(ce.jobs_service, "claim_fairest", claim_fairest)
    monkeypatch.setattr(ce, "broadcast_hint", hint)
    monkeypatch.setattr(ce, "publish", lambda app, job_id: sent["published"].append(job_id))
    monkeypatch.setattr(ce, "_install_pool_process_handler", lambda: None)  # not in pytest's own process
    rt = ce._TaskRuntime.__new__(ce._TaskRuntime)
    rt.app, rt.worker, rt.running = None, worker, False
    return rt, queue, sent


def test_a_task_trains_the_queued_jobs_one_after_another_without_a_new_message(monkeypatch):
    w = _FakeWorker()
    rt, queue, sent = _runtime_with(monkeypatch, w, ["a", "b", "c"])
    assert rt.run("a") == "ran"
    assert w.trained == [("a", 1), ("b", 1), ("c", 1)] and queue == []
    assert sent["hints"] == ["a", "b", "c"] and sent["published"] == []
    # The messages of b and c arrive later: nothing is queued, so they are no-ops.
    assert rt.run("b") == "skipped" and rt.run("c") == "skipped"
    assert len(w.trained) == 3


def test_a_stopping_worker_claims_no_further_job(monkeypatch):
    w = _FakeWorker()
    rt, queue, sent = _runtime_with(monkeypatch, w, ["a", "b", "c"], stop_after_hint="b")
    assert rt.run("a") == "ran"
    assert [j for j, _ in w.trained] == ["a", "b"] and queue == ["c"]  # c stays queued, its message in the broker
    assert sent["published"] == []


def test_a_job_handed_back_at_shutdown_is_published_again_and_ends_the_task(monkeypatch):
    w = _FakeWorker(stop_in="a")
    rt, queue, sent = _runtime_with(monkeypatch, w, ["a", "b"])
    assert rt.run("a") == "handed over"
    assert sent["published"] == ["a"] and sent["hints"] == [] and queue == ["b"]
