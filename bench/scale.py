"""Scale-out benchmark: jobs per minute with 1 and with 2 Celery workers (concurrency 1 each), and API latency.

Starts its own Redis and PostgreSQL (as the distributed tests do: installed binaries, free loopback ports,
temporary directories; or MLP_TEST_REDIS_URL / MLP_TEST_POSTGRES_URL), one API process and N workers, submits a
fixed batch of small training jobs at once and measures the time until all have succeeded. Meanwhile a client
polls ``GET /v1/jobs/{id}`` and records its latency (p50/p99). Prints the figures and the scaling ratio
(target >= 1.7x on a 2-core machine).

    .venv/bin/python bench/scale.py [--jobs 12] [--epochs 10] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.distributed.conftest import (  # noqa: E402 - the same server helpers as the tests
    Cluster, PostgresServer, RedisServer, job_body, setup_data,
)


def _fresh_pg_db(admin_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


class Poller(threading.Thread):
    """GET /v1/jobs/{id} in a loop (one request at a time, 20 per second), recording latencies."""

    def __init__(self, url: str, job_id: str):
        super().__init__(daemon=True)
        self.url, self.job_id = url, job_id
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                t = time.perf_counter()
                r = http.get(f"/v1/jobs/{self.job_id}")
                self.latencies.append(time.perf_counter() - t)
                assert r.status_code == 200
                self.stop.wait(0.05)


def run(n_workers: int, args, tmp: Path, broker_url: str, database_url: str) -> dict:
    c = Cluster(tmp / f"w{n_workers}", database_url=database_url, broker_url=broker_url)
    try:
        api = c.api()
        for _ in range(n_workers):
            c.worker(concurrency=1)
        with api.client() as http:
            net_id, ds_id, _ = setup_data(http, n=args.rows)
            # Warm-up: one job so imports and first-touch costs are not in the figure.
            warm = http.post("/v1/jobs", json=job_body(net_id, ds_id, 99, epochs=1)).json()["id"]
            while http.get(f"/v1/jobs/{warm}").json()["status"] != "succeeded":
                time.sleep(0.1)
            poller = Poller(api.url, warm)
            poller.start()
            t0 = time.perf_counter()
            ids = [http.post("/v1/jobs", json=job_body(net_id, ds_id, s, epochs=args.epochs)).json()["id"]
                   for s in range(args.jobs)]
            while True:  # one light request per 0.25 s, so the bench itself barely loads the 2 cores it measures
                done = http.get("/v1/jobs", params={"status": "succeeded", "limit": 1}).json()["total"]
                if done >= args.jobs + 1:
                    break
                bad = sum(http.get("/v1/jobs", params={"status": s, "limit": 1}).json()["total"]
                          for s in ("failed", "cancelled")) if done and done % 4 == 0 else 0
                if bad:
                    raise RuntimeError(f"{bad} job(s) did not succeed:\n{c.logs()}")
                time.sleep(0.25)
            elapsed = time.perf_counter() - t0
            poller.stop.set()
            poller.join()
        lat = np.array(poller.latencies) * 1000
        return {"workers": n_workers, "seconds": elapsed, "jobs_per_min": args.jobs / elapsed * 60,
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "requests": len(lat)}
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per setting; the best is reported")
    ap.add_argument("--sqlite", action="store_true", help="SQLite on the shared directory instead of PostgreSQL")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-scale-"))
    redis = None if os.environ.get("MLP_TEST_REDIS_URL") else RedisServer(tmp / "redis").start()
    broker_url = os.environ.get("MLP_TEST_REDIS_URL") or redis.url
    pg = None
    if not args.sqlite and not os.environ.get("MLP_TEST_POSTGRES_URL"):
        pg = PostgresServer().start()
    try:
        rounds: dict[int, list[dict]] = {1: [], 2: []}
        for i in range(args.repeat):  # alternating 1, 2, 1, 2, ... so a busy spell hits both settings
            for n in (1, 2):
                if args.sqlite:
                    db = f"sqlite:///{tmp / f'r{i}w{n}.db'}"
                else:
                    db = _fresh_pg_db(os.environ.get("MLP_TEST_POSTGRES_URL") or pg.url)
                r = run(n, args, tmp / f"round{i}", broker_url, db)
                rounds[n].append(r)
                print(f"round {i + 1}: {n} worker(s): {r['jobs_per_min']:.1f} jobs/min, p99 {r['p99_ms']:.1f} ms",
                      flush=True)
        # Best round of each setting: other load on the machine only ever slows a round down.
        results = [max(rounds[n], key=lambda r: r["jobs_per_min"]) for n in (1, 2)]
    finally:
        if pg is not None:
            pg.stop()
        if redis is not None:
            redis.stop()

    print(f"scale-out benchmark: {args.jobs} jobs x {args.epochs} epochs ({args.rows} rows, batch 4), "
          f"{os.cpu_count()} CPUs, Redis + {'SQLite' if args.sqlite else 'PostgreSQL'}, best of {args.repeat}")
    print(f"{'workers':>8} {'seconds':>8} {'jobs/min':>9} {'GET p50 ms':>11} {'GET p99 ms':>11} {'requests':>9}")
    for r in results:
        print(f"{r['workers']:>8} {r['seconds']:>8.1f} {r['jobs_per_min']:>9.1f} {r['p50_ms']:>11.1f} "
              f"{r['p99_ms']:>11.1f} {r['requests']:>9}")
    ratio = results[1]["jobs_per_min"] / results[0]["jobs_per_min"]
    paired = [b["jobs_per_min"] / a["jobs_per_min"] for a, b in zip(rounds[1], rounds[2])]
    print(f"scaling 1 -> 2 workers: {ratio:.2f}x best vs best (target >= 1.7x); per round "
          f"{' '.join(f'{r:.2f}' for r in paired)}, median {statistics.median(paired):.2f}x")


if __name__ == "__main__":
    main()
