"""Service benchmark (issue 3): the API against the engine it wraps, on a real server process.

(a) training throughput of the engine benchmark's network (784-256-128-10, ReLU, softmax cross-entropy, SGD
    lr 0.1, batch 128) on 60,000 synthetic float32 samples: a job through the API (server-side time from the
    worker's claim to the committed model, so it includes loading the data set, the per-epoch checkpoint and
    metric commits and saving the model) vs calling ``core.fit`` directly in this process with the same BLAS
    threads. Rounds of one direct and one API run back to back; the median of the per-round ratios is
    reported (and the best-vs-best ratio). The client polls the job every 0.5 s, as a progress bar would: at
    10 polls/s each answer preempts one of the worker's two BLAS threads, which stalls both, and the ratio
    drops by 5-10 % on 2 cores. Target >= 0.95x.
(a2) the same comparison side by side: the job (a worker with one BLAS thread) and ``core.fit`` (one thread)
    run at the same time, one core each, so a slow spell of a shared machine hits both; the steadier figure.
(b) p50/p99 latency of ``GET /v1/jobs/{id}`` from 8 concurrent clients while every worker trains
    (a server with MLP_WORKERS = number of cores, each worker training the network above). Target p99 <= 25 ms.
    The 8 clients are threads of this process polling back to back, measured twice: with the standard
    library's http.client, and with httpx. On 2 cores the clients share the CPU with the server, and httpx
    costs more per request than the server does, so with httpx the figure is mostly the clients' own.
(c) one-row ``POST /v1/models/{id}/predict`` p50 vs ``GET /healthz`` p50 on the same idle server, over one
    keep-alive connection. Target <= 1.5x. Also a 1,000-row predict end-to-end (target <= 150 ms).
(d) upload-and-parse rate of a ~100 MB numeric CSV (multipart, streamed), in MB/s of file size.

Run::

    make bench-service                # or: .venv/bin/python bench/service.py [--samples N] [--epochs E] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

CORES = os.cpu_count() or 1
# The reference core.fit gets the BLAS threads a worker of a one-worker server gets (cores // workers).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(CORES))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import core  # noqa: E402
from core_train import BATCH, LEARNING_RATE, SPEC, make_data  # noqa: E402  (the engine benchmark's setup)

OPTIMIZER = {"type": "sgd", "learning_rate": LEARNING_RATE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlp-service serve`` as a subprocess with its own data directory."""

    def __init__(self, data_dir: Path, workers: int):
        self.data_dir, self.workers, self.port = data_dir, workers, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(sys.executable).with_name("mlp-service")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_") and not k.endswith("_NUM_THREADS")}
        env.update(MLP_DATA_DIR=str(data_dir), MLP_WORKERS=str(workers), MLP_MAX_UPLOAD_BYTES=str(2**31),
                   PYTHONPATH=str(ROOT))
        self.log = open(data_dir.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(cmd + ["serve", "--host", "127.0.0.1", "--port", str(self.port),
                                            "--no-access-log", "--log-level", "warning"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {self.log.name}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ok(r: httpx.Response, status: int) -> dict:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}")
    return r.json()


def wait_job(http: httpx.Client, job_id: str, until=("succeeded", "failed", "cancelled"), poll=0.25) -> dict:
    while True:
        job = ok(http.get(f"/v1/jobs/{job_id}"), 200)
        if job["status"] in until:
            return job
        time.sleep(poll)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def direct_fit(X, y, epochs: int) -> tuple[float, float]:
    """(samples/s over the whole fit call, samples/s of the median epoch) calling core.fit directly."""
    net = core.Network.from_spec(SPEC)
    t0 = time.perf_counter()
    hist = core.fit(net, X, y, epochs=epochs, batch_size=BATCH, optimizer=OPTIMIZER, standardize=False, seed=0)
    wall = time.perf_counter() - t0
    n = X.shape[0]
    return n * epochs / wall, n / statistics.median(h["seconds"] for h in hist)


def api_fit(http: httpx.Client, body: dict, n: int) -> tuple[float, float, float, str]:
    """(samples/s from the worker's claim to the committed model, samples/s of the median epoch, client wall
    seconds from POST to seeing success, model id) for one job through the API."""
    t0 = time.perf_counter()
    job = wait_job(http, ok(http.post("/v1/jobs", json=body), 202)["id"], poll=0.5)
    client_wall = time.perf_counter() - t0
    if job["status"] != "succeeded":
        raise RuntimeError(f"bench job failed: {job}")
    server_wall = (datetime.fromisoformat(job["finished_at"])
                   - datetime.fromisoformat(job["started_at"])).total_seconds()
    metrics = ok(http.get(f"/v1/jobs/{job['id']}/metrics"), 200)["items"]
    epoch = n / statistics.median(m["seconds"] for m in metrics)
    return n * body["epochs"] / server_wall, epoch, client_wall, job["model_id"]


def upload_bench_data(http: httpx.Client, X, y, data_dir: Path) -> tuple[dict, dict]:
    """Upload the synthetic data set (.npz, multipart) and create the benchmark network."""
    npz = data_dir.parent / "bench.npz"
    np.savez(npz, X=X, y=y)
    with open(npz, "rb") as f:
        ds = ok(http.post("/v1/datasets", files={"file": ("bench.npz", f, "application/x-npz")},
                          data={"name": "bench-60k", "task": "classification"}, timeout=600), 201)
    npz.unlink()
    return ds, ok(http.post("/v1/networks", json=SPEC), 201)


def bench_training(http: httpx.Client, X, y, body: dict, rounds: int) -> dict:
    """Rounds of one direct run and one API run back to back (the order alternates round by round); the
    headline is the median over rounds of API / direct, so a slow spell of the machine (which on a shared
    2-core VM comes and goes for tens of seconds) lands on both sides of a pair instead of on one side's best."""
    n, epochs = X.shape[0], body["epochs"]
    ok(http.post("/v1/jobs", json=dict(body, epochs=1)), 202)  # starts the (lazily spawned) worker
    direct_fit(X, y, 1)  # warm-up: BLAS threads, page cache
    direct, api, ratios = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            d = direct_fit(X, y, epochs)
            a = api_fit(http, body, n)
        else:
            a = api_fit(http, body, n)
            d = direct_fit(X, y, epochs)
        direct.append(d)
        api.append(a)
        ratios.append(a[0] / d[0])
    return {"samples": n, "epochs": epochs, "rounds": rounds,
            "ratio": statistics.median(ratios), "round_ratios": [round(x, 3) for x in ratios],
            "best_ratio": max(a[0] for a in api) / max(d[0] for d in direct),
            "direct_samples_per_s": statistics.median(d[0] for d in direct),
            "api_samples_per_s": statistics.median(a[0] for a in api),
            "direct_runs": [round(d[0]) for d in direct], "api_runs": [round(a[0]) for a in api],
            "direct_epoch_samples_per_s": statistics.median(d[1] for d in direct),
            "api_epoch_samples_per_s": statistics.median(a[1] for a in api),
            "api_client_wall_s": min(a[2] for a in api), "model_id": api[-1][3]}


def bench_training_side_by_side(http: httpx.Client, X, y, body: dict, rounds: int) -> dict:
    """(a2) The same comparison with both sides running at the same time, one core each: a job on a server
    whose workers have one BLAS thread each, and core.fit in this process limited to one thread. A slow spell
    of the machine then hits both sides at once, so the ratio is far steadier than (a) on a noisy machine;
    the API side also pays for the server's own work (claims, commits, answering the polls) on the shared
    cores. Median of the per-round ratios (whole job from claim to committed model vs whole fit call)."""
    from threadpoolctl import threadpool_limits

    n = X.shape[0]
    ratios, api_runs, direct_runs = [], [], []
    for _ in range(rounds):
        result: dict = {}

        def api_side() -> None:
            result["api"] = api_fit(http, body, n)

        t = threading.Thread(target=api_side)
        t.start()
        with threadpool_limits(limits=1):
            # Start once the worker has claimed the job, so the two overlap as fully as they can.
            time.sleep(0.3)
            d = direct_fit(X, y, body["epochs"])
        t.join()
        a = result["api"]
        api_runs.append(round(a[0]))
        direct_runs.append(round(d[0]))
        ratios.append(a[0] / d[0])
    return {"rounds": rounds, "ratio": statistics.median(ratios), "round_ratios": [round(r, 3) for r in ratios],
            "api_runs": api_runs, "direct_runs": direct_runs}


def bench_predict(http: httpx.Client, model_id: str, X, rounds: int) -> dict:
    one = json.dumps({"inputs": [X[0].tolist()]}).encode()
    many = json.dumps({"inputs": X[:1000].tolist()}).encode()
    headers = {"Content-Type": "application/json"}
    path = f"/v1/models/{model_id}/predict"
    for _ in range(50):  # warm up (loads the model into the API process's cache)
        ok(http.post(path, content=one, headers=headers), 200)
        http.get("/healthz")
    t_pred, t_health = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = http.get("/healthz")
        t_health.append(time.perf_counter() - t0)
        assert r.status_code == 200
        t0 = time.perf_counter()
        r = http.post(path, content=one, headers=headers)
        t_pred.append(time.perf_counter() - t0)
        assert r.status_code == 200
    t_many = []
    for _ in range(21):
        t0 = time.perf_counter()
        r = http.post(path, content=many, headers=headers)
        t_many.append(time.perf_counter() - t0)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1000
    p_pred, p_health = statistics.median(t_pred), statistics.median(t_health)
    return {"predict_1row_p50_ms": p_pred * 1e3, "healthz_p50_ms": p_health * 1e3, "ratio": p_pred / p_health,
            "predict_1000x784_p50_ms": statistics.median(t_many) * 1e3}


def bench_csv(http: httpx.Client, tmp: Path, target_mb: float) -> dict:
    path = tmp / "big.csv"
    rng = np.random.default_rng(1)
    n_feat = 50
    with open(path, "w") as f:
        f.write(",".join([f"f{i}" for i in range(n_feat)] + ["y"]) + "\n")
        while f.tell() < target_mb * 1e6:
            block = rng.standard_normal((20000, n_feat + 1)).astype(np.float32)
            np.savetxt(f, block, fmt="%.5f", delimiter=",")
    size = path.stat().st_size
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        ds = ok(http.post("/v1/datasets", files={"file": ("big.csv", f, "text/csv")},
                          data={"name": "big-csv", "task": "regression"}, timeout=900), 201)
    dt = time.perf_counter() - t0
    path.unlink()
    return {"csv_mb": size / 1e6, "rows": ds["n_samples"], "columns": n_feat + 1, "seconds": dt,
            "mb_per_s": size / 1e6 / dt}


def _poll_client(arg) -> list[float]:
    """One polling client: a keep-alive connection, GET /v1/jobs/{id} back to back between two wall times.
    ``lib`` is the HTTP client: the standard library's http.client, or httpx."""
    url, jobs, i, start_at, stop_at, lib = arg
    out = []
    if lib == "stdlib":
        host, port = url.rsplit("/", 1)[-1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)

        def get(path: str) -> tuple[int, bytes]:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
    else:
        conn = httpx.Client(base_url=url, timeout=30)

        def get(path: str) -> tuple[int, bytes]:
            r = conn.get(path)
            return r.status_code, r.content
    try:
        get("/healthz")
        time.sleep(max(0.0, start_at - time.time()))
        k = i
        while time.time() < stop_at:
            t0 = time.perf_counter()
            status, content = get(f"/v1/jobs/{jobs[k % len(jobs)]}")
            out.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(content[:500])
            k += 1
    finally:
        conn.close()
    return out


def bench_polling(http: httpx.Client, url: str, body: dict, workers: int, seconds: float, clients: int,
                  mode: str, libs: list[str]) -> list[dict]:
    """One measurement per client library in ``libs``, back to back, while the same jobs train."""
    jobs = [ok(http.post("/v1/jobs", json=body), 202)["id"] for _ in range(workers)]
    for j in jobs:
        wait_job(http, j, until=("running", "succeeded", "failed", "cancelled"), poll=0.1)
    for j in jobs:  # past data loading: every worker is in its epoch loop
        while ok(http.get(f"/v1/jobs/{j}"), 200)["status"] == "running" and not \
                ok(http.get(f"/v1/jobs/{j}/metrics"), 200)["items"]:
            time.sleep(0.2)
    results = []
    for lib in libs:
        running = [ok(http.get(f"/v1/jobs/{j}"), 200)["status"] for j in jobs]
        start_at = time.time() + 3.0  # every client process is up and connected by then
        args = [(url, jobs, i, start_at, start_at + seconds, lib) for i in range(clients)]
        if mode == "processes":
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(clients) as pool:
                parts = pool.map(_poll_client, args)
        else:
            parts = [None] * clients

            def run(i: int) -> None:
                parts[i] = _poll_client(args[i])

            threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        latencies = [x for part in parts for x in part]
        still = [ok(http.get(f"/v1/jobs/{j}"), 200)["status"] for j in jobs]
        results.append({"client_lib": lib, "workers_training": sum(s == "running" for s in still),
                        "workers": workers, "clients": clients, "client_mode": mode, "requests": len(latencies),
                        "p50_ms": pct(latencies, 50) * 1e3, "p99_ms": pct(latencies, 99) * 1e3,
                        "max_ms": max(latencies) * 1e3, "running_at_start": running})
    for j in jobs:
        http.post(f"/v1/jobs/{j}/cancel")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds of (a): one direct and one API run each")
    ap.add_argument("--csv-mb", type=float, default=100.0)
    ap.add_argument("--poll-seconds", type=float, default=10.0)
    ap.add_argument("--predict-rounds", type=int, default=1000)
    ap.add_argument("--clients", choices=["threads", "processes"], default="threads",
                    help="the 8 polling clients of (b): threads of this process (default) or separate processes")
    ap.add_argument("--client-lib", choices=["stdlib", "httpx", "both"], default="both",
                    help="HTTP client of the 8 pollers of (b): http.client (light), httpx, or one run of each")
    ap.add_argument("--only", default="abcd", help="which parts to run, e.g. 'b' or 'ac'")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-"))
    data_dir = tmp / "data"
    X, y = make_data(args.samples)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"mlp-service benchmark: {CORES} cores, {args.samples} x 784 samples, {args.epochs} epochs; "
          f"data in {tmp}", flush=True)
    results: dict = {}

    srv = Server(data_dir, workers=1)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            ds, net = upload_bench_data(http, X, y, data_dir)
            body = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": args.epochs, "batch_size": BATCH,
                    "optimizer": OPTIMIZER, "standardize": False, "seed": 0}
            if "a" in args.only:
                a = results["training"] = bench_training(http, X, y, body, args.rounds)
                model_id = a["model_id"]
                print(f"(a) training: API / core.fit, median of {a['rounds']} paired rounds: {a['ratio']:.3f}x "
                      f"(target >= 0.95; per round {a['round_ratios']}, best vs best {a['best_ratio']:.3f}x); "
                      f"medians API {a['api_samples_per_s']:,.0f} vs core.fit {a['direct_samples_per_s']:,.0f} "
                      f"samples/s, per-epoch loop {a['api_epoch_samples_per_s']:,.0f} vs "
                      f"{a['direct_epoch_samples_per_s']:,.0f}; runs API {a['api_runs']} direct {a['direct_runs']}",
                      flush=True)
            if "c" in args.only:
                if "a" not in args.only:
                    model_id = wait_job(http, ok(http.post("/v1/jobs", json=dict(body, epochs=1)), 202)["id"])[
                        "model_id"]
                c = results["predict"] = bench_predict(http, model_id, X, args.predict_rounds)
                print(f"(c) one-row predict p50 {c['predict_1row_p50_ms']:.3f} ms vs /healthz p50 "
                      f"{c['healthz_p50_ms']:.3f} ms -> {c['ratio']:.2f}x (target <= 1.5); 1000x784 predict p50 "
                      f"{c['predict_1000x784_p50_ms']:.1f} ms (target <= 150)", flush=True)
            if "d" in args.only:
                d = results["csv_upload"] = bench_csv(http, tmp, args.csv_mb)
                print(f"(d) CSV upload+parse: {d['csv_mb']:.1f} MB ({d['rows']:,} rows x {d['columns']} columns) "
                      f"in {d['seconds']:.2f} s -> {d['mb_per_s']:.1f} MB/s", flush=True)
    finally:
        srv.stop()

    if "a" in args.only or "b" in args.only:
        srv = Server(data_dir, workers=CORES)
        try:
            with httpx.Client(base_url=srv.url, timeout=60) as http:
                if "a" in args.only:  # same data directory, so the first server's data set and network
                    warm = [ok(http.post("/v1/jobs", json=dict(body, epochs=1)), 202)["id"] for _ in range(CORES)]
                    for j in warm:  # every worker is up and idle before the first round
                        wait_job(http, j)
                    a2 = results["training_side_by_side"] = bench_training_side_by_side(
                        http, X, y, body, args.rounds)
                    print(f"(a2) side by side, one core and one BLAS thread each: API / core.fit median "
                          f"{a2['ratio']:.3f}x (per round {a2['round_ratios']}; API {a2['api_runs']} vs direct "
                          f"{a2['direct_runs']} samples/s)", flush=True)
                if "b" in args.only:
                    libs = ["stdlib", "httpx"] if args.client_lib == "both" else [args.client_lib]
                    results["polling"] = bench_polling(http, srv.url, dict(body, epochs=1000), CORES,
                                                       args.poll_seconds, 8, args.clients, libs)
                    for b in results["polling"]:
                        print(f"(b) GET /v1/jobs/{{id}} with {b['clients']} {b['client_lib']} client "
                              f"{b['client_mode']} while {b['workers_training']}/{b['workers']} workers train: "
                              f"p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms (target <= 25), "
                              f"{b['requests']} requests", flush=True)
        finally:
            srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on the machine skew every figure)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
