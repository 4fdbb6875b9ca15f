"""Issue 17 under Celery: a sweep whose trial's worker is SIGKILLed mid-training goes on.

One API (the sweep driver), two ``mlp-service worker``s on Redis, SQLite shared on this machine. A reference
sweep runs uninterrupted; the same request runs again and the worker training one of its trials is SIGKILLed
(its whole process group). The job's lease expires, the other worker takes the trial over (attempt 2) and
resumes from its last checkpoint (training the epochs since then again, bit for bit), and the sweep ends with
the reference's ranking: the same trials, the same parameters and the same metric values.
"""

from __future__ import annotations

import time

from sklearn.datasets import load_digits

from tests.distributed.conftest import holder_pgid

TERMINAL = ("succeeded", "failed", "cancelled")
EPOCHS = 30
ROWS = 1200
# Short leases only to keep the test short (defaults: 15 s lease, 3 s heartbeat, 5 s sweeper period).
LEASES = {"MLP_LEASE_SECONDS": "3", "MLP_LEASE_HEARTBEAT_SECONDS": "0.5", "MLP_SWEEP_SECONDS": "0.5"}


def _wait(http, sweep_id: str, *, timeout: float, until=None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = http.get(f"/v1/sweeps/{sweep_id}").json()
        if (until(s) if until else s["status"] in TERMINAL):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"sweep {sweep_id} still {s['status']} after {timeout}s: {s['counts']}")
        time.sleep(0.05)


def _ranking(s: dict) -> list:
    return [(t["rank"], t["number"], t["status"], sorted(t["params"].items()), t["value"], t["epoch"])
            for t in s["trials"]]


def test_sigkilled_worker_mid_trial_the_sweep_goes_on_with_the_same_ranking(cluster, redis_url):
    c = cluster(database_url=None, broker_url=redis_url, extra_env=LEASES)
    api = c.api()
    workers = c.workers(2)
    X, y = load_digits(return_X_y=True)
    with api.client() as http:
        # 1,200 rows (150 minibatches an epoch): a trial of 30 epochs lasts long enough to be seen, and killed,
        # mid-training on a fast machine (with 300 rows a trial took 0.1-0.4 s here and often ended first).
        ds = http.post("/v1/datasets", json={"name": "digits", "X": X[:ROWS].tolist(), "y": y[:ROWS].tolist()})
        assert ds.status_code == 201, ds.text
        body = {"dataset_id": ds.json()["id"], "strategy": "random", "seed": 5, "max_trials": 3, "parallelism": 1,
                "pruner": "none", "space": {"epochs": EPOCHS, "batch_size": 8, "units": {"low": 8, "high": 48}}}
        ref = _wait(http, http.post("/v1/sweeps", json=body).json()["id"], timeout=120)
        assert ref["status"] == "succeeded", ref
        sid = http.post("/v1/sweeps", json=body).json()["id"]

        victim = victim_job = None
        deadline = time.monotonic() + 60
        while victim is None:  # a trial mid-training (3 to EPOCHS-10 epochs committed): SIGKILL its worker
            assert time.monotonic() < deadline, f"no trial reached mid-training:\n{c.logs()}"
            for job in http.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]:
                if job["status"] == "running" and 3 <= job["progress"]["epoch"] <= EPOCHS - 10:
                    pgid = holder_pgid(f"sqlite:///{c.data_dir / 'mlp.db'}", job["id"])
                    victim = next((w for w in workers if w.pid == pgid), None)
                    victim_job = job
                    break
            time.sleep(0.02)
        victim.kill_group()
        killed_at = time.monotonic()

        after = _wait(http, sid, timeout=90)
        jobs = http.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]
        resumed = http.get(f"/v1/jobs/{victim_job['id']}").json()
        items = http.get(f"/v1/jobs/{victim_job['id']}/metrics").json()["items"]

    assert after["status"] == "succeeded", f"{after}\n{c.logs()}"
    assert time.monotonic() - killed_at < 60
    assert _ranking(after) == _ranking(ref)  # same trials, params and metric values, ranked alike
    assert after["best_trial"] == ref["best_trial"] and after["importances"] == ref["importances"]
    assert len(jobs) == 3  # one job per trial: the interrupted trial was resumed, not re-proposed
    assert resumed["status"] == "succeeded" and resumed["attempt"] == 2, resumed
    assert [m["epoch"] for m in items] == list(range(1, EPOCHS + 1))  # each epoch's metrics exactly once
    survivor = next(w for w in workers if w is not victim)
    log = survivor.log()
    assert f"job {victim_job['id']}: resuming after epoch" in log, log
    resumed_from = int(log.split(f"job {victim_job['id']}: resuming after epoch ")[1].split()[0])
    assert 1 <= resumed_from < EPOCHS  # from a checkpoint (the first epoch's, then at most every 1 s), not anew
