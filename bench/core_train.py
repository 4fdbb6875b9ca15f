"""Training and inference throughput of ``core`` against PyTorch and scikit-learn.

Network 784-256-128-10 (ReLU, softmax cross-entropy), plain SGD with learning
rate 0.1, batch 128, 60,000 synthetic float32 samples (fixed seed, labels from
a random linear teacher so the task is learnable), 2 BLAS threads.  Each
framework trains one warm-up epoch, then the median of 3 timed epochs is
reported as samples/s (and, since the frameworks alternate, the median of the per-epoch paired
ratios, which a slow spell of a shared machine distorts least).  The frameworks run interleaved, epoch by epoch (core's
fit callback runs one PyTorch and one scikit-learn epoch between two core
epochs, outside core's timing), so a machine that gets busier during the run
slows all three alike and the ratios stay meaningful.  Also: batch-1024 inference samples/s and median
single-row ``predict`` latency for core and PyTorch, and peak RSS (core.fit's
own peak is measured in a fresh child process, so the other frameworks'
memory does not hide it), and the "bare GEMM floor": the epoch time of only the
eight matrix multiplies per batch that any implementation of this network
must do, which shows how much of core's epoch is overhead around BLAS.

Run::

    make bench-core                       # or: .venv/bin/python bench/core_train.py

On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set in the
environment (they pin old OpenBLAS kernels), numpy is slower than it can be;
compare with both unset for that command alone::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/core_train.py

The script prints the kernel numpy's OpenBLAS picked (threadpoolctl), so the
two runs can be told apart.  Options: ``--samples``, ``--epochs``,
``--threads``, ``--no-torch``, ``--no-sklearn``, ``--json``, ``--adam-only``.

A second row trains the same network with Adam (1e-3), a cosine learning-rate
schedule over the run and gradients clipped to global norm 1.0, against
PyTorch's ``Adam`` + ``CosineAnnealingLR`` + ``clip_grad_norm_`` in the same
run (interleaved the same way; target >= 1.3x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
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
ADAM_LR = 1e-3  # the Adam row
CLIP_NORM = 1.0
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


def hwm_rss_mb() -> float:
    """Peak RSS of this process image from /proc (VmHWM). Unlike ru_maxrss it starts
    afresh at exec, so a child started by a big parent reports its own peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


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
    noise = 0.1 * rng.standard_normal((n, N_CLASSES), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for s in range(0, n, 8192):  # in blocks: one big X @ teacher makes OpenBLAS take ~2x X in scratch
        y[s : s + 8192] = (X[s : s + 8192] @ teacher + noise[s : s + 8192]).argmax(axis=1)
    return X, y


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------- frameworks
class TorchRunner:
    """The same network in PyTorch: nn.Sequential, CrossEntropyLoss, optim.SGD,
    shuffled index batches, He-normal weights and zero biases like core's "he"."""

    def __init__(self, X, y, threads: int, adam_epochs: int | None = None):
        import torch
        from torch import nn

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Linear(N_FEATURES, HIDDEN[0]), nn.ReLU(),
            nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
            nn.Linear(HIDDEN[1], N_CLASSES),
        )
        for m in self.model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.criterion = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=0.0)
        self.sched = None
        self.clip = None
        if adam_epochs is not None:  # the Adam row: cosine over the run's epochs, gradients clipped
            self.opt = torch.optim.Adam(self.model.parameters(), lr=ADAM_LR)
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=adam_epochs)
            self.clip = CLIP_NORM
        self.Xt, self.yt = torch.from_numpy(X), torch.from_numpy(y)
        self.gen = torch.Generator().manual_seed(0)
        self.n = len(X)
        self.epoch_seconds: list[float] = []
        self.losses: list[tuple[float, float]] = []

    def epoch(self) -> None:
        """One shuffled pass; tracks mean loss and accuracy as core's history does."""
        torch, model, opt, crit = self.torch, self.model, self.opt, self.criterion
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(self.n, generator=self.gen)
        total_loss = 0.0
        correct = 0
        for i in range(0, self.n, BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = self.Xt[idx], self.yt[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = crit(out, yb)
            loss.backward()
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        if self.sched is not None:
            self.sched.step()
        self.epoch_seconds.append(time.perf_counter() - t0)
        self.losses.append((total_loss / self.n, correct / self.n))

    def predict(self, xnp: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(xnp)).argmax(1).numpy()

    def result(self) -> dict:
        timed = self.epoch_seconds[1:]
        self.model.eval()
        return {
            "version": self.torch.__version__,
            "epoch_seconds": timed,
            "samples_per_s": self.n / statistics.median(timed),
            "train_loss": [l for l, _ in self.losses],
            "train_accuracy": [a for _, a in self.losses],
        }


class SklearnRunner:
    """scikit-learn's MLPClassifier (float64), one partial_fit per epoch."""

    def __init__(self, X, y):
        import sklearn
        from sklearn.neural_network import MLPClassifier

        self.version = sklearn.__version__
        self.X64 = X.astype(np.float64)
        self.y = y
        self.clf = MLPClassifier(
            hidden_layer_sizes=HIDDEN, activation="relu", solver="sgd", alpha=0.0,
            batch_size=BATCH, learning_rate="constant", learning_rate_init=LEARNING_RATE,
            momentum=0.0, nesterovs_momentum=False, shuffle=True, random_state=0,
        )
        self.classes = np.arange(N_CLASSES)
        self.epoch_seconds: list[float] = []

    def epoch(self) -> None:
        import warnings

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.X64, self.y, classes=self.classes)
        self.epoch_seconds.append(time.perf_counter() - t0)

    def result(self) -> dict:
        timed = self.epoch_seconds[1:]
        return {
            "version": self.version,
            "epoch_seconds": timed,
            "samples_per_s": len(self.X64) / statistics.median(timed),
            "train_loss_last": float(self.clf.loss_),
        }


def inference_figures(predict, X) -> dict:
    """Batch-1024 samples/s (median of 50 calls) and median one-row latency in us."""
    xb = np.ascontiguousarray(X[:1024])
    predict(xb)
    per_call = median_time(lambda: predict(xb), 50)
    rows = [np.ascontiguousarray(X[i : i + 1]) for i in range(200)]
    for r in rows[:20]:
        predict(r)
    lat = []
    for _ in range(10):
        for r in rows:
            t = time.perf_counter()
            predict(r)
            lat.append(time.perf_counter() - t)
    return {"infer1024_samples_per_s": 1024 / per_call, "predict1_us": statistics.median(lat) * 1e6}


def run_all(X, y, epochs: int, threads: int, others: list, results: dict) -> None:
    """Train core for 1 + epochs epochs; after each core epoch, the other frameworks
    run one epoch each (interleaved, so a busy machine slows all of them alike).
    Core's epoch time is measured from the end of the previous callback to the
    start of the next, so it covers everything fit does in an epoch (shuffle,
    batches, metrics) and nothing the other frameworks do."""
    from core import Network, fit

    net = Network.from_spec(SPEC)
    marks = {"resume": None}
    core_seconds: list[float] = []

    def callback(metrics, state):
        core_seconds.append(time.perf_counter() - marks["resume"])
        for runner in others:
            runner.epoch()
        marks["resume"] = time.perf_counter()
        return False

    marks["resume"] = time.perf_counter()
    history = fit(
        net, X, y, epochs=1 + epochs, batch_size=BATCH,
        optimizer={"type": "sgd", "learning_rate": LEARNING_RATE, "momentum": 0.0},
        seed=0, callback=callback,
    )
    timed = core_seconds[1:]  # drop the warm-up epoch
    hist_seconds = [float(h["seconds"]) for h in history][1:]
    results["core"] = {
        "epoch_seconds": timed,
        "history_seconds": hist_seconds,
        "samples_per_s": len(X) / statistics.median(timed),
        "samples_per_s_history": len(X) / statistics.median(hist_seconds),
        "train_loss": [float(h["train_loss"]) for h in history],
        "train_accuracy": [float(h.get("train_accuracy", float("nan"))) for h in history],
    }
    for runner in others:
        results[runner.name] = runner.result()
    results["core"].update(inference_figures(net.predict, X))
    for runner in others:
        if hasattr(runner, "predict"):
            results[runner.name].update(inference_figures(runner.predict, X))


def run_adam_row(X, y, epochs: int, threads: int, with_torch: bool) -> dict:
    """Adam (lr 1e-3) with a cosine schedule over the run and gradients clipped to global norm 1.0,
    core against PyTorch with the same settings, interleaved epoch by epoch as ``run_all``."""
    from core import Network, fit

    runner = TorchRunner(X, y, threads, adam_epochs=1 + epochs) if with_torch else None
    marks = {"resume": time.perf_counter()}
    core_seconds: list[float] = []

    def callback(metrics, state):
        core_seconds.append(time.perf_counter() - marks["resume"])
        if runner is not None:
            runner.epoch()
        marks["resume"] = time.perf_counter()
        return False

    history = fit(Network.from_spec(SPEC), X, y, epochs=1 + epochs, batch_size=BATCH, seed=0,
                  optimizer={"type": "adam", "learning_rate": ADAM_LR}, lr_schedule={"type": "cosine"},
                  clip_norm=CLIP_NORM, callback=callback)
    out = {"core": {"epoch_seconds": core_seconds[1:], "samples_per_s": len(X) / statistics.median(core_seconds[1:]),
                    "train_loss": [float(h["train_loss"]) for h in history], "lr": [h["lr"] for h in history]}}
    if runner is not None:
        out["torch"] = runner.result()
        out["torch"]["lr"] = [g["lr"] for g in runner.opt.param_groups]
    return out


def print_adam_row(adam: dict) -> None:
    c = adam["core"]
    print(f"\nAdam lr {ADAM_LR} + cosine schedule + clip_norm {CLIP_NORM} (torch: Adam, CosineAnnealingLR, "
          "clip_grad_norm_), same network and batches:")
    print(f"core  {c['samples_per_s']:12,.0f} samples/s, epochs {' '.join(f'{s:.2f}' for s in c['epoch_seconds'])} s, "
          f"loss {' '.join(f'{v:.4f}' for v in c['train_loss'])}")
    if "torch" in adam:
        t = adam["torch"]
        ratios = [o / k for o, k in zip(t["epoch_seconds"], c["epoch_seconds"])]
        print(f"torch {t['samples_per_s']:12,.0f} samples/s, epochs {' '.join(f'{s:.2f}' for s in t['epoch_seconds'])} s, "
              f"loss {' '.join(f'{v:.4f}' for v in t['train_loss'])}")
        print(f"core / torch   Adam+cosine+clipping throughput: {c['samples_per_s'] / t['samples_per_s']:.2f}x "
              f"(target >= 1.3x); paired epochs median {statistics.median(ratios):.2f}x")


def gemm_floor(X, repeats: int = 3) -> float:
    """Seconds per epoch of the bare matrix multiplies core.fit cannot avoid: per batch,
    3 forward GEMMs, 3 weight-gradient GEMMs and 2 input-gradient GEMMs (the first layer
    needs none), into preallocated outputs, with numpy's ``dot``. Median of ``repeats``
    epochs. numpy's GEMM clears its output before multiplying; core's plain-SGD step
    accumulates the weight gradients straight into the weights (``core/_blas.py``),
    which skips that pass, so core can come close to this floor or dip under it."""
    rng = np.random.default_rng(1)
    sizes = [(N_FEATURES, HIDDEN[0]), (HIDDEN[0], HIDDEN[1]), (HIDDEN[1], N_CLASSES)]
    W = [rng.standard_normal(s).astype(np.float32) for s in sizes]
    dW = [np.empty_like(w) for w in W]
    xb = np.ascontiguousarray(X[:BATCH])
    h = [np.empty((BATCH, s[1]), np.float32) for s in sizes]
    g = [np.empty((BATCH, s[0]), np.float32) for s in sizes]
    n_batches = -(-len(X) // BATCH)

    def epoch():
        for _ in range(n_batches):
            np.dot(xb, W[0], out=h[0])
            np.dot(h[0], W[1], out=h[1])
            np.dot(h[1], W[2], out=h[2])
            np.dot(h[1].T, h[2], out=dW[2])
            np.dot(h[2], W[2].T, out=g[2])
            np.dot(h[0].T, g[2], out=dW[1])
            np.dot(g[2], W[1].T, out=g[1])
            np.dot(xb.T, g[1], out=dW[0])

    epoch()
    return median_time(epoch, repeats)


def memory_probe(samples: int) -> dict:
    """Run in a fresh process: RSS before and peak RSS during one epoch of core.fit."""
    from core import Network, fit

    X, y = make_data(samples)
    before = current_rss_mb()
    peak_before = hwm_rss_mb()
    fit(Network.from_spec(SPEC), X, y, epochs=1, batch_size=BATCH,
        optimizer={"type": "sgd", "learning_rate": LEARNING_RATE}, seed=0)
    return {"rss_before_fit_mb": before, "peak_before_fit_mb": peak_before,
            "peak_after_fit_mb": hwm_rss_mb(), "data_mb": X.nbytes / 2**20}


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
    ap.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--adam-only", action="store_true",
                    help="only the Adam + cosine + clipping row (core and PyTorch)")
    args = ap.parse_args(argv)

    if args.memory_probe:
        with threadpool_limits(limits=args.threads):
            print(json.dumps(memory_probe(args.samples)))
        return 0

    load1 = os.getloadavg()[0]
    X, y = make_data(args.samples)
    results: dict = {}
    print("mlp-service core benchmark: 784-256-128-10 ReLU, softmax cross-entropy, SGD lr 0.1, batch 128")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, threads={args.threads}, load average before start {load1:.2f}")
    if load1 > 0.5:
        print("  warning: the machine is busy; figures are noisy (frameworks run interleaved, "
              "so ratios suffer less than absolute numbers)")
    if args.adam_only:
        with threadpool_limits(limits=args.threads):
            print_adam_row(run_adam_row(X, y, args.epochs, args.threads, not args.no_torch))
        return 0
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print("env: " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env.items()))
    with threadpool_limits(limits=args.threads):
        print(f"numpy BLAS: {blas_description()}")
        print(f"data: {args.samples} x {N_FEATURES} float32 ({X.nbytes / 2**20:.0f} MiB); "
              f"1 warm-up + {args.epochs} timed epochs each, median reported; "
              "frameworks interleaved epoch by epoch")
        others = []
        if not args.no_torch:
            runner = TorchRunner(X, y, args.threads)
            runner.name = "torch"
            others.append(runner)
        if not args.no_sklearn:
            runner = SklearnRunner(X, y)
            runner.name = "sklearn"
            others.append(runner)
        run_all(X, y, args.epochs, args.threads, others, results)
        results["gemm_floor_seconds"] = gemm_floor(X)
        results["adam_cosine_clip"] = run_adam_row(X, y, args.epochs, args.threads, not args.no_torch)
    process_peak = peak_rss_mb()

    probe = subprocess.run(
        [sys.executable, __file__, "--memory-probe", "--samples", str(args.samples),
         "--threads", str(args.threads)], capture_output=True, text=True, check=True)
    mem = json.loads(probe.stdout.strip().splitlines()[-1])
    results["memory"] = {**mem, "benchmark_process_peak_mb": process_peak}

    c = results["core"]
    print()
    print(f"{'':8s} {'train samples/s':>16s} {'timed epochs (s)':>20s} {'infer1024 samples/s':>20s} "
          f"{'predict(1) us':>14s}")

    def row(name, r):
        eps = " ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        inf = f"{r['infer1024_samples_per_s']:,.0f}" if "infer1024_samples_per_s" in r else "-"
        lat = f"{r['predict1_us']:.1f}" if "predict1_us" in r else "-"
        print(f"{name:8s} {r['samples_per_s']:16,.0f} {eps:>20s} {inf:>20s} {lat:>14s}")

    row("core", c)

    def paired(other) -> str:
        """Median over timed epochs of (the other's epoch i) / (core's epoch i): the two ran back to back, so
        a slow spell of the machine (they come and go for seconds on a shared VM) mostly hits both."""
        ratios = [o / k for o, k in zip(other["epoch_seconds"], c["epoch_seconds"])]
        return f"median {statistics.median(ratios):.2f}x ({' '.join(f'{r:.2f}' for r in ratios)})"

    for name in ("torch", "sklearn"):
        if name in results:
            row(name, results[name])
    print()
    print(f"core epoch seconds from history[...]['seconds']: "
          f"{' '.join(f'{s:.2f}' for s in c['history_seconds'])} ({c['samples_per_s_history']:,.0f} samples/s)")
    print(f"core  train loss by epoch: {' '.join(f'{v:.4f}' for v in c['train_loss'])}; "
          f"accuracy: {' '.join(f'{v:.3f}' for v in c['train_accuracy'])}")
    if "torch" in results:
        t = results["torch"]
        print(f"torch train loss by epoch: {' '.join(f'{v:.4f}' for v in t['train_loss'])}; "
              f"accuracy: {' '.join(f'{v:.3f}' for v in t['train_accuracy'])}")
        print(f"core / torch   training throughput: {c['samples_per_s'] / t['samples_per_s']:.2f}x (target >= 1.5x); "
              f"best epoch vs best epoch: {min(t['epoch_seconds']) / min(c['epoch_seconds']):.2f}x; "
              f"paired epochs: {paired(t)}")
        print(f"core / torch   batch-1024 inference: {c['infer1024_samples_per_s'] / t['infer1024_samples_per_s']:.2f}x "
              "(target >= 1x)")
    if "sklearn" in results:
        s_ = results["sklearn"]
        print(f"core / sklearn training throughput: {c['samples_per_s'] / s_['samples_per_s']:.2f}x (target >= 3x); "
              f"best epoch vs best epoch: {min(s_['epoch_seconds']) / min(c['epoch_seconds']):.2f}x; "
              f"paired epochs: {paired(s_)}")
    floor = results["gemm_floor_seconds"]
    line = (f"bare GEMM floor (the 8 matrix multiplies per batch, nothing else): {floor:.2f} s/epoch = "
            f"{len(X) / floor:,.0f} samples/s; core's median epoch is "
            f"{statistics.median(c['epoch_seconds']) / floor:.2f}x the floor")
    if "torch" in results:
        line += f", torch's {statistics.median(results['torch']['epoch_seconds']) / floor:.2f}x"
    print(line)
    print(f"core single-row predict median: {c['predict1_us']:.1f} us (target <= 50 us)")
    print_adam_row(results["adam_cosine_clip"])
    extra = mem["peak_after_fit_mb"] - max(mem["rss_before_fit_mb"], mem["peak_before_fit_mb"])
    print(f"peak RSS: core.fit alone (fresh process): {mem['peak_after_fit_mb']:.0f} MiB, "
          f"{extra:+.0f} MiB over the {mem['peak_before_fit_mb']:.0f} MiB before fit "
          f"(the data set is {mem['data_mb']:.0f} MiB); this process with all frameworks: {process_peak:.0f} MiB")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
