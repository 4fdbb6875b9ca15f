"""Auth benchmark (issue 6): what checking API keys costs ``GET /v1/jobs/{id}``.

Two real ``mlp-service serve`` processes started side by side in the same run: one without keys (the implicit
tenant), one with a key made by ``mlp-service keys create``. Each gets a network, a data set and a finished job.
Then C concurrent keep-alive clients poll ``GET /v1/jobs/{id}`` for several short rounds, alternating between the
two servers (open, keyed, keyed, open, ...), so drift on the machine hits both alike. Reported per server:
requests per second, p50 and p99 latency, and the keyed/open ratios (overall, and the median of the ratios of
neighbouring rounds, which is less sensitive to other load on the machine). Target: keys add <= 10 % to p99.

Also measured in-process: one scrypt verification (paid once per key per server process) and the per-request
cached check (an HMAC of the presented key and a dict lookup).

Run::

    .venv/bin/python bench/auth.py [--clients 8] [--rounds 6] [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd() -> list[str]:
    script = Path(sys.executable).with_name("mlp-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env.update(MLP_DATA_DIR=str(data_dir), MLP_WORKERS="1", PYTHONPATH=str(ROOT))
    return env


class Server:
    """``mlp-service serve`` in a subprocess with its own data directory."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(_cmd() + ["serve", "--port", str(self.port), "--no-access-log",
                                               "--log-level", "warning"],
                                     cwd=ROOT, env=_env(data_dir), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (see {self.log.name})")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def make_job(url: str, headers: dict) -> str:
    """A network, a small data set and a finished job; returns the job id."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).round(4)
    y = (X[:, 0] > 0).astype(int)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        net = http.post("/v1/networks", json={"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                                          {"type": "dense", "units": 2, "activation": "softmax"}],
                                              "loss": "cross_entropy"}).json()
        ds = http.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()}).json()
        job = http.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 2}).json()
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's job did not finish")
            time.sleep(0.1)
        return job["id"]


def poll_round(url: str, path: str, headers: dict, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """C clients GET ``path`` for ``seconds``: (latencies in s, non-200 answers, wall time)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    bad = [0] * clients
    start_gate = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            http.get(path)  # connect outside the measurement
            start_gate.wait()
            stop = time.monotonic() + seconds
            out = latencies[i]
            while True:
                t0 = time.perf_counter()
                r = http.get(path)
                out.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    bad[i] += 1
                if time.monotonic() >= stop:
                    return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return [x for lat in latencies for x in lat], sum(bad), time.monotonic() - t0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def in_process_costs() -> dict:
    """scrypt verification (once per key and process) vs the cached per-request check."""
    from types import SimpleNamespace

    from service.auth import KeyRing
    from service.keys import service as keys_service

    salt = os.urandom(16)
    t0 = time.perf_counter()
    for _ in range(5):
        keys_service.hash_secret("x" * 43, salt)
    scrypt_ms = (time.perf_counter() - t0) / 5 * 1e3
    ring = KeyRing(SimpleNamespace(api_keys_file=None, api_key_recheck_seconds=1.0), sessionmaker=None)
    token = "mlp_0123456789ab_" + "y" * 43
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        ring.cached(token, 0.0)
    return {"scrypt_verify_ms": scrypt_ms, "cached_check_us": (time.perf_counter() - t0) / n * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6, help="rounds per server, alternating")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlp-bench-auth-") as tmp:
        open_dir, keyed_dir = Path(tmp) / "open" / "data", Path(tmp) / "keyed" / "data"
        open_dir.mkdir(parents=True)
        keyed_dir.mkdir(parents=True)
        key = subprocess.run(_cmd() + ["keys", "create", "--tenant", "bench"], cwd=ROOT, env=_env(keyed_dir),
                             capture_output=True, text=True, check=True).stdout.strip()
        servers = {"open": Server(open_dir), "keyed": Server(keyed_dir)}
        try:
            headers = {"open": {}, "keyed": {"Authorization": f"Bearer {key}"}}
            paths = {name: f"/v1/jobs/{make_job(s.url, headers[name])}" for name, s in servers.items()}
            # warm-up (first key verification, caches, connection pools)
            for name, s in servers.items():
                poll_round(s.url, paths[name], headers[name], args.clients, 1.0)
            lat: dict[str, list[float]] = {"open": [], "keyed": []}
            wall = {"open": 0.0, "keyed": 0.0}
            bad = {"open": 0, "keyed": 0}
            round_p99: dict[str, list[float]] = {"open": [], "keyed": []}
            for r in range(args.rounds):
                order = ("open", "keyed") if r % 2 == 0 else ("keyed", "open")
                for name in order:
                    values, n_bad, secs = poll_round(servers[name].url, paths[name], headers[name], args.clients,
                                                     args.seconds)
                    lat[name] += values
                    round_p99[name].append(pct(values, 99))
                    wall[name] += secs
                    bad[name] += n_bad
            unauth = httpx.get(servers["keyed"].url + paths["keyed"]).status_code
        finally:
            for s in servers.values():
                s.stop()

    result = {name: {"requests": len(lat[name]), "non_200": bad[name], "rps": len(lat[name]) / wall[name],
                     "p50_ms": pct(lat[name], 50) * 1e3, "p99_ms": pct(lat[name], 99) * 1e3,
                     "mean_ms": statistics.fmean(lat[name]) * 1e3} for name in lat}
    result["p99_ratio"] = result["keyed"]["p99_ms"] / result["open"]["p99_ms"]
    result["rps_ratio"] = result["keyed"]["rps"] / result["open"]["rps"]
    # each keyed round against the open round next to it: robust to load that comes and goes on the machine
    result["p99_ratio_median_of_rounds"] = statistics.median(k / o for k, o in zip(round_p99["keyed"],
                                                                                   round_p99["open"]))
    result["keyed_without_key_status"] = unauth
    result["in_process"] = in_process_costs()
    result["setup"] = {"clients": args.clients, "rounds": args.rounds, "seconds": args.seconds,
                       "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"GET /v1/jobs/{{id}}: {args.clients} clients, {args.rounds} x {args.seconds:.0f} s per server, "
          f"alternating; {os.cpu_count()} cores")
    print(f"{'server':<8}{'requests':>10}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}")
    for name in ("open", "keyed"):
        m = result[name]
        print(f"{name:<8}{m['requests']:>10}{m['rps']:>9.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
              f"{m['non_200']:>9}")
    verdict = "OK" if result["p99_ratio"] <= 1.10 else "OVER TARGET"
    print(f"keyed/open: p99 x{result['p99_ratio']:.3f} (target <= 1.10: {verdict}), median of per-round p99 "
          f"ratios x{result['p99_ratio_median_of_rounds']:.3f}, rps x{result['rps_ratio']:.3f}")
    ip = result["in_process"]
    print(f"in process: scrypt verification {ip['scrypt_verify_ms']:.1f} ms once per key and server process; "
          f"cached check {ip['cached_check_us']:.2f} us per request; keyed server without a key -> {unauth}")


if __name__ == "__main__":
    main()
