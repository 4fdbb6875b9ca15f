"""Training and inference throughput of ``core`` against PyTorch and scikit-learn.

Network 784-256-128-10 (ReLU, softmax cross-entropy), plain SGD with learning
rate 0.1, batch 128, 60,000 synthetic float32 samples (fixed seed, labels from
a random linear teacher so the task is learnable), 2 BLAS threads.  Each
framework trains one warm-up epoch, then the median of 3 timed epochs is
reported as samples/s.  Also: batch-1024 inference samples/s and median
single-row ``predict`` latency for core and PyTorch, and peak RSS.

Run::

    make bench-core                       # or: .venv/bin/python bench/core_train.py

On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set in the
environment (they pin old OpenBLAS kernels), numpy is slower than it can be;
compare with both unset for that command alone::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/core_train.py

The script prints the kernel numpy's OpenBLAS picked (threadpoolctl), so the
two runs can be told apart.  Options: ``--samples``, ``--epochs``,
``--threads``, ``--no-torch``, ``--no-sklearn``, ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

# Limit every BLAS/OpenMP pool before numpy (and torch) load their libraries.
_THREADS = "2"
for _arg_i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _arg_i + 1 < len(sys.argv):
        _THREADS = sys.argv[_arg_i + 1]
    elif _arg.startswith("--threads="):
        _THREADS = _arg.split("=", 1)[1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_FEATURES = 784
HIDDEN = (256, 128)
N_CLASSES = 10
LEARNING_RATE = 0.1
BATCH = 128

SPEC = {
    "name": "bench-784-256-128-10",
    "input_dim": N_FEATURES,
    "layers": [
        {"type": "dense", "units": HIDDEN[0], "activation": "relu", "init": "he"},
        {"type": "dense", "units": HIDDEN[1], "activation": "relu", "init": "he"},
        {"type": "dense", "units": N_CLASSES, "activation": "softmax", "init": "he"},
    ],
    "loss": "cross_entropy",
}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        return float("nan")


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic, learnable classification data.

    Returns
    -------
    X : ndarray of shape (n, 784), float32, standard normal features
    y : ndarray of shape (n,), int64, argmax of a random linear teacher plus noise
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    teacher = rng.standard_normal((N_FEATURES, N_CLASSES), dtype=np.float32) / np.sqrt(N_FEATURES)
    logits = X @ teacher + 0.1 * rng.standard_normal((n, N_CLASSES), dtype=np.float32)
    y = logits.argmax(axis=1).astype(np.int64)
    return X, y


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- core
def bench_core(X, y, epochs: int, results: dict) -> None:
    from core import Network, fit

    net = Network.from_spec(SPEC)
    stamps: list[float] = []

    def callback(metrics, state):
        stamps.append(time.perf_counter())
        return False

    rss_before = current_rss_mb()
    t0 = time.perf_counter()
    history = fit(
        net, X, y, epochs=1 + epochs, batch_size=BATCH,
        optimizer={"type": "sgd", "learning_rate": LEARNING_RATE, "momentum": 0.0},
        seed=0, callback=callback,
    )
    wall = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    timed = wall[1:]  # drop the warm-up epoch
    hist_seconds = [float(h["seconds"]) for h in history][1:]
    sec = statistics.median(timed)
    results["core"] = {
        "epoch_seconds": timed,
        "history_seconds": hist_seconds,
        "samples_per_s": len(X) / sec,
        "samples_per_s_history": len(X) / statistics.median(hist_seconds),
        "train_loss": [float(h["train_loss"]) for h in history],
        "train_accuracy": [float(h.get("train_accuracy", float("nan"))) for h in history],
        "rss_before_fit_mb": rss_before,
        "peak_rss_after_fit_mb": peak_rss_mb(),
    }

    xb = X[:1024]
    net.predict(xb)
    per_call = median_time(lambda: net.predict(xb), 50)
    results["core"]["infer1024_samples_per_s"] = 1024 / per_call

    rows = [X[i : i + 1] for i in range(200)]
    for r in rows[:20]:
        net.predict(r)
    lat = []
    for _ in range(10):
        for r in rows:
            t = time.perf_counter()
            net.predict(r)
            lat.append(time.perf_counter() - t)
    results["core"]["predict1_us"] = statistics.median(lat) * 1e6


# -------------------------------------------------------------------------- torch
def bench_torch(X, y, epochs: int, threads: int, results: dict) -> None:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(N_FEATURES, HIDDEN[0]), nn.ReLU(),
        nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
        nn.Linear(HIDDEN[1], N_CLASSES),
    )
    for m in model:
        if isinstance(m, nn.Linear):  # He init like core's "he"
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.0)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    n = len(X)

    def epoch() -> tuple[float, float]:
        model.train()
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        correct = 0
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = criterion(out, yb)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        return total_loss / n, correct / n

    times, losses = [], []
    for _ in range(1 + epochs):
        t0 = time.perf_counter()
        loss, acc = epoch()
        times.append(time.perf_counter() - t0)
        losses.append((loss, acc))
    timed = times[1:]
    results["torch"] = {
        "version": torch.__version__,
        "epoch_seconds": timed,
        "samples_per_s": n / statistics.median(timed),
        "train_loss": [l for l, _ in losses],
        "train_accuracy": [a for _, a in losses],
        "peak_rss_after_fit_mb": peak_rss_mb(),
    }

    model.eval()

    def infer(xnp):
        with torch.no_grad():
            return model(torch.from_numpy(xnp)).argmax(1).numpy()

    xb = X[:1024]
    infer(xb)
    per_call = median_time(lambda: infer(xb), 50)
    results["torch"]["infer1024_samples_per_s"] = 1024 / per_call

    rows = [X[i : i + 1] for i in range(200)]
    for r in rows[:20]:
        infer(r)
    lat = []
    for _ in range(10):
        for r in rows:
            t = time.perf_counter()
            infer(r)
            lat.append(time.perf_counter() - t)
    results["torch"]["predict1_us"] = statistics.median(lat) * 1e6


# ------------------------------------------------------------------------ sklearn
def bench_sklearn(X, y, epochs: int, results: dict) -> None:
    import warnings

    import sklearn
    from sklearn.neural_network import MLPClassifier

    X64 = X.astype(np.float64)
    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN, activation="relu", solver="sgd", alpha=0.0,
        batch_size=BATCH, learning_rate="constant", learning_rate_init=LEARNING_RATE,
        momentum=0.0, nesterovs_momentum=False, shuffle=True, random_state=0,
    )
    classes = np.arange(N_CLASSES)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(1 + epochs):
            t0 = time.perf_counter()
            clf.partial_fit(X64, y, classes=classes)
            times.append(time.perf_counter() - t0)
    timed = times[1:]
    results["sklearn"] = {
        "version": sklearn.__version__,
        "epoch_seconds": timed,
        "samples_per_s": len(X) / statistics.median(timed),
        "train_loss_last": float(clf.loss_),
        "peak_rss_after_fit_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- main
def blas_description() -> str:
    parts = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            parts.append(
                f"{info.get('internal_api')} {info.get('version')} kernel={info.get('architecture')} "
                f"threads={info.get('num_threads')} ({Path(info.get('filepath', '')).name})"
            )
    return "; ".join(parts) or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON")
    args = ap.parse_args(argv)

    X, y = make_data(args.samples)
    results: dict = {}
    with threadpool_limits(limits=args.threads):
        print("mlp-service core benchmark: 784-256-128-10 ReLU, softmax cross-entropy, SGD lr 0.1, batch 128")
        print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
              f"{os.cpu_count()} CPUs, threads={args.threads}")
        print(f"numpy BLAS: {blas_description()}")
        env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        print("env: " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env.items()))
        print(f"data: {args.samples} x {N_FEATURES} float32 ({X.nbytes / 2**20:.0f} MiB), "
              f"1 warm-up + {args.epochs} timed epochs, median reported")
        print(f"RSS after data generation: {current_rss_mb():.0f} MiB")
        print()

        bench_core(X, y, args.epochs, results)
        if not args.no_torch:
            bench_torch(X, y, args.epochs, args.threads, results)
        if not args.no_sklearn:
            bench_sklearn(X, y, args.epochs, results)

    c = results["core"]
    print(f"{'':10s} {'train samples/s':>16s} {'epoch s (timed)':>24s} {'infer1024 samples/s':>20s} {'predict(1) us':>14s}")

    def row(name, r):
        eps = " ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        inf = f"{r['infer1024_samples_per_s']:,.0f}" if "infer1024_samples_per_s" in r else "-"
        lat = f"{r['predict1_us']:.1f}" if "predict1_us" in r else "-"
        print(f"{name:10s} {r['samples_per_s']:16,.0f} {eps:>24s} {inf:>20s} {lat:>14s}")

    row("core", c)
    if "torch" in results:
        row(f"torch", results["torch"])
    if "sklearn" in results:
        row("sklearn", results["sklearn"])
    print()
    print(f"core per-epoch seconds from history: {' '.join(f'{s:.2f}' for s in c['history_seconds'])} "
          f"({c['samples_per_s_history']:,.0f} samples/s)")
    print(f"core train loss by epoch: {' '.join(f'{v:.4f}' for v in c['train_loss'])}; "
          f"accuracy: {' '.join(f'{v:.3f}' for v in c['train_accuracy'])}")
    if "torch" in results:
        t = results["torch"]
        print(f"torch train loss by epoch: {' '.join(f'{v:.4f}' for v in t['train_loss'])}; "
              f"accuracy: {' '.join(f'{v:.3f}' for v in t['train_accuracy'])}")
        print(f"core / torch training throughput:   {c['samples_per_s'] / t['samples_per_s']:.2f}x (target >= 1.5x)")
        print(f"core / torch batch-1024 inference:  {c['infer1024_samples_per_s'] / t['infer1024_samples_per_s']:.2f}x (target >= 1x)")
    if "sklearn" in results:
        s = results["sklearn"]
        print(f"core / sklearn training throughput: {c['samples_per_s'] / s['samples_per_s']:.2f}x (target >= 3x)")
    print(f"core single-row predict median: {c['predict1_us']:.1f} us (target <= 50 us)")
    extra = c["peak_rss_after_fit_mb"] - c["rss_before_fit_mb"]
    print(f"peak RSS: {c['peak_rss_after_fit_mb']:.0f} MiB after core.fit (fit added at most {extra:.0f} MiB over "
          f"{c['rss_before_fit_mb']:.0f} MiB; the data set is {X.nbytes / 2**20:.0f} MiB)"
          + (f", {results['torch']['peak_rss_after_fit_mb']:.0f} MiB after torch" if "torch" in results else "")
          + (f", {results['sklearn']['peak_rss_after_fit_mb']:.0f} MiB after sklearn (float64 copy)" if "sklearn" in results else ""))

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
