"""Paired A/B of ``core.fit``: an old copy of ``core`` against this tree's, in one process.

Both versions train the engine benchmark's network (784-256-128-10, ReLU,
softmax cross-entropy, batch 128) from the same seed on the same synthetic
data, once with plain SGD (learning rate 0.1: the fused BLAS path) and once
with Adam (1e-3), in alternating order repeat after repeat, so a machine that
gets busier slows both alike. Every pair must end with bitwise-identical
weights and history (the script stops otherwise); before timing, a set of
small runs covering the other code paths (momentum, weight decay, dropout,
binary and regression losses, early stopping, validation data, standardising,
resuming from a callback's checkpoint) must agree bitwise too.

Prints, per optimizer, the median seconds of one ``fit`` for old and new, the
ratio of the medians and the median of the per-repeat ratios (new / old;
below 1 means the new code is faster). ``--threads=N`` sets the BLAS threads
(default 2; 1 gives steadier figures on a busy machine).

Run::

    rm -rf /tmp/core_old && mkdir -p /tmp/core_old && git archive main core | tar -x -C /tmp/core_old
    .venv/bin/python bench/ab_core.py /tmp/core_old/core --repeats 7
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

# Limit the BLAS pools before numpy loads its library (default 2 threads, as bench/core_train.py).
_THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import core as core_new  # noqa: E402
from core_train import BATCH, LEARNING_RATE, SPEC, make_data  # noqa: E402

OPTIMIZERS = {"sgd": {"type": "sgd", "learning_rate": LEARNING_RATE},
              "adam": {"type": "adam", "learning_rate": 1e-3}}


def load_core(path: Path, name: str):
    """Import the ``core`` package at ``path`` under another module name."""
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(core, spec, X, y, **kwargs):
    """One fit from seed 0: seconds, final weights and history."""
    net = core.Network.from_spec(spec)
    t0 = time.perf_counter()
    history = core.fit(net, X, y, seed=0, **kwargs)
    seconds = time.perf_counter() - t0
    return seconds, {k: v.copy() for k, v in net.get_arrays().items()}, history


def same(a, b) -> bool:
    """Bitwise-equal arrays and equal histories (seconds left out, and ``lr`` and ``val_auc``, which older cores
    lack)."""
    (_, wa, ha), (_, wb, hb) = a, b
    if wa.keys() != wb.keys() or not all(np.array_equal(wa[k], wb[k]) for k in wa):
        return False
    strip = [[{k: v for k, v in h.items() if k not in ("seconds", "lr", "val_auc")} for h in hist] for hist in (ha, hb)]
    return strip[0] == strip[1] and ha.best_epoch == hb.best_epoch and ha.stopped_early == hb.stopped_early


def check_paths(old, new) -> int:
    """Small runs through every branch of fit; returns how many agreed bitwise."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y3 = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    y2 = (X[:, 2] > 0).astype(np.int64)
    yr = np.stack([X @ rng.standard_normal(6), X[:, 0] ** 2], axis=1).astype(np.float32)
    clf = {"layers": [{"type": "dense", "units": 16, "activation": "tanh"}, {"type": "dropout", "rate": 0.2},
                      {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    bce = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                      {"type": "dense", "units": 1, "activation": "sigmoid"}], "loss": "binary_cross_entropy"}
    reg = {"layers": [{"type": "dense", "units": 8, "activation": "leaky_relu"},
                      {"type": "dense", "units": 2}], "loss": "mae"}
    odd = {"layers": [{"type": "dense", "units": 37, "activation": "relu"},
                      {"type": "dense", "units": 23, "activation": "relu"},
                      {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
    cases = [
        (clf, y3, {"epochs": 4, "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                                              "nesterov": True}, "validation_split": 0.2}),
        (clf, y3, {"epochs": 4, "optimizer": {"type": "adam"}, "weight_decay": 1e-3, "standardize": True}),
        (bce, y2, {"epochs": 6, "validation": (X[:50], y2[:50]),
                   "early_stopping": {"monitor": "val_accuracy", "patience": 2}}),
        (reg, yr, {"epochs": 6, "optimizer": {"type": "sgd", "learning_rate": 0.01}, "validation_split": 0.25,
                   "early_stopping": {"monitor": "val_r2", "patience": 2, "min_delta": 1e-3}}),
        (dict(reg, loss="mse"), yr, {"epochs": 3, "batch_size": 7, "weight_decay": 0.01}),
        # widths that are no multiple of a SIMD vector (the flat optimizer state), Adam's and AdamW's options
        (odd, y3, {"epochs": 3, "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.01},
                   "validation_split": 0.2, "lr_schedule": {"type": "cosine"}}),
        (odd, y3, {"epochs": 3, "batch_size": 29, "optimizer": {"type": "adamw"}, "l1": 1e-4,
                   "weight_decay": 1e-3, "clip_norm": 0.5}),
        (odd, y3, {"epochs": 3, "optimizer": {"type": "rmsprop", "momentum": 0.5}, "weight_decay": 1e-3}),
        (odd, y3, {"epochs": 3, "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}}),
    ]
    agreed = 0
    for spec, y, kwargs in cases:
        if not same(run(old, spec, X, y, **kwargs), run(new, spec, X, y, **kwargs)):
            raise SystemExit(f"old and new core differ on {spec['loss']} with {kwargs}")
        agreed += 1
    # resume from the checkpoint of epoch 2 of 5 ends with the uninterrupted run's weights
    for core in (old, new):
        states = []
        kwargs = {"epochs": 5, "optimizer": {"type": "adam"}, "validation_split": 0.2,
                  "early_stopping": {"patience": 3}}
        full = run(core, clf, X, y3, callback=lambda m, s: states.append(s), **kwargs)
        resumed = run(core, clf, X, y3, resume=states[1], **kwargs)
        if not same(full, resumed):
            raise SystemExit(f"{core.__name__}: a resumed run does not end like an uninterrupted one")
    return agreed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="path of the old core package (a directory with __init__.py)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", default="2", help="BLAS threads (give as --threads=N)")
    ap.add_argument("--check-only", action="store_true", help="only the bitwise comparisons, no timing")
    args = ap.parse_args()
    old = load_core(args.old.resolve(), "core_old")
    print(f"old core: {Path(old.__file__).parent}\nnew core: {Path(core_new.__file__).parent}")
    print(f"bitwise-identical small runs: {check_paths(old, core_new)} (and resume, in both)")
    if args.check_only:
        return
    X, y = make_data(args.samples)
    for name, opt in OPTIMIZERS.items():
        kwargs = {"epochs": args.epochs, "batch_size": BATCH, "optimizer": opt}
        run(old, SPEC, X, y, **kwargs), run(core_new, SPEC, X, y, **kwargs)  # warm-up
        times = {"old": [], "new": []}
        for r in range(args.repeats):
            order = [("old", old), ("new", core_new)]
            results = {label: run(core, SPEC, X, y, **kwargs) for label, core in order[::1 - 2 * (r % 2)]}
            if not same(results["old"], results["new"]):
                raise SystemExit(f"{name}: old and new core end with different weights")
            for label in times:
                times[label].append(results[label][0])
        mo, mn = statistics.median(times["old"]), statistics.median(times["new"])
        paired = statistics.median(n / o for n, o in zip(times["new"], times["old"]))
        print(f"{name:5s} {args.samples} rows x {args.epochs} epoch(s), {args.repeats} repeats: "
              f"old {mo:.3f} s, new {mn:.3f} s, new/old {mn / mo:.3f} (median of paired ratios {paired:.3f}); "
              "weights bitwise identical")


if __name__ == "__main__":
    main()
