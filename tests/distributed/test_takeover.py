"""Issue 4's scenario: one API, two workers on Redis + PostgreSQL, six jobs, one worker SIGKILLed mid-training.

All six jobs succeed with every epoch's metrics exactly once, and each model equals (weights, metrics,
predictions) the same job run by the embedded executor.
"""

from __future__ import annotations

import time

import numpy as np

from tests.distributed.conftest import holder_pgid, job_body, setup_data, wait_job

N_JOBS = 6
EPOCHS = 10


def _run_all(http, net_id, ds_id) -> list[str]:
    ids = []
    for seed in range(N_JOBS):
        r = http.post("/v1/jobs", json=job_body(net_id, ds_id, seed, epochs=EPOCHS))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def _results(http, ids, X) -> list[dict]:
    out = []
    for job_id in ids:
        job = http.get(f"/v1/jobs/{job_id}").json()
        metrics = http.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
        pred = http.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": X[:300].tolist()})
        assert pred.status_code == 200, pred.text
        out.append({"job": job, "metrics": metrics, "pred": pred.json()})
    return out


def _strip(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


def test_sigkilled_worker_job_is_taken_over_and_matches_embedded(cluster, redis_url, postgres_url):
    dist = cluster(database_url=postgres_url, broker_url=redis_url)
    api = dist.api()
    workers = dist.workers(2)
    with api.client() as http:
        net_id, ds_id, X = setup_data(http)
        ids = _run_all(http, net_id, ds_id)

        # Wait until a job is mid-training (3 to 7 of 10 epochs committed), then SIGKILL its whole worker.
        victim_job, victim = None, None
        deadline = time.monotonic() + 90
        while victim is None and time.monotonic() < deadline:
            for job_id in ids:
                job = http.get(f"/v1/jobs/{job_id}").json()
                if job["status"] == "running" and 3 <= job["progress"]["epoch"] <= EPOCHS - 3:
                    pgid = holder_pgid(postgres_url, job_id)
                    victim = next((w for w in workers if w.pid == pgid), None)
                    if victim is not None:
                        victim_job = job
                        break
            time.sleep(0.05)
        assert victim is not None, f"no job reached mid-training:\n{dist.logs()}"
        victim.kill_group()
        killed_at = time.monotonic()
        killed_epoch = victim_job["progress"]["epoch"]

        # Another worker takes the job over (attempt 2) within 60 s and resumes after the checkpoint.
        taken = wait_job(http, victim_job["id"], timeout=90,
                         cond=lambda j: j["attempt"] >= 2 and j["status"] == "running")
        assert time.monotonic() - killed_at < 60, f"takeover took {time.monotonic() - killed_at:.1f}s"
        assert taken["status"] in ("running", "succeeded"), taken

        for job_id in ids:
            job = wait_job(http, job_id, timeout=150)
            assert job["status"] == "succeeded", f"{job}\n{dist.logs()}"
        dist_results = _results(http, ids, X)

    survivor_log = next(w for w in workers if w is not victim).log()
    assert f"job {victim_job['id']}: resuming after epoch" in survivor_log, survivor_log
    resumed_from = int(survivor_log.split(f"job {victim_job['id']}: resuming after epoch ")[1].split()[0])
    assert killed_epoch >= 3 and 1 <= resumed_from < EPOCHS  # a checkpoint: the first epoch's, then one a second

    for r in dist_results:
        epochs = [m["epoch"] for m in r["metrics"]]
        assert epochs == list(range(1, EPOCHS + 1)), f"{r['job']['id']}: epochs {epochs}"  # each exactly once
    victim_result = next(r for r in dist_results if r["job"]["id"] == victim_job["id"])
    assert victim_result["job"]["attempt"] == 2

    # The same six jobs in embedded mode (SQLite, local worker processes, no broker).
    emb = cluster(database_url=None, broker_url=None, extra_env={"MLP_WORKERS": "2"})
    emb_api = emb.api()
    with emb_api.client() as http:
        net_id, ds_id, X2 = setup_data(http)
        assert np.array_equal(X, X2)
        emb_ids = _run_all(http, net_id, ds_id)
        for job_id in emb_ids:
            assert wait_job(http, job_id, timeout=150)["status"] == "succeeded"
        emb_results = _results(http, emb_ids, X)

    for d, e in zip(dist_results, emb_results):
        assert _strip(d["metrics"]) == _strip(e["metrics"]), d["job"]["id"]
        assert d["pred"]["predictions"] == e["pred"]["predictions"]
        assert d["pred"]["probabilities"] == e["pred"]["probabilities"]
        wd, we = _weights(dist, d["job"]["model_id"]), _weights(emb, e["job"]["model_id"])
        assert wd.keys() == we.keys() and all(np.array_equal(wd[k], we[k]) for k in wd), d["job"]["id"]


def _weights(cluster, model_id: str) -> dict[str, np.ndarray]:
    path = cluster.data_dir / "artifacts" / "models" / model_id / "model.npz"
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}
