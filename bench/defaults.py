"""Defaults that win: a job with only network_id and dataset_id against scikit-learn's MLP with its defaults.

On scikit-learn's bundled digits, wine, breast cancer (75/25 split, stratified, random_state 0) and diabetes,
and on MNIST (the first 8,000 images of tests/data/mnist to train, the last 2,000 to test, pixels / 255), with
the same architecture (one hidden layer of 100 relu units): test accuracy (R² for diabetes) of

- ``ours``: ``core.fit`` with the job schema's defaults, as the worker turns them into fit options;
- ``old``: the defaults before issue 14's tuning (epochs 10, batch 32, adam 0.001, no weight decay, no schedule,
  output bias 0), for reference;
- ``sklearn``: ``MLPClassifier(random_state=0)`` / ``MLPRegressor(random_state=0)`` (max_iter 200, adam 0.001,
  batch min(200, n), alpha 1e-4, stops when the training loss stalls; no input scaling, as its defaults);

all measured in the same run, with the seconds each took, the margin ``ours - sklearn``, and for MNIST ours
again with seeds 1 and 2 (how much of the margin is the seed). The figures are deterministic for a given
machine; only the seconds depend on the load (printed). Run under the shared lock::

    flock /work/helpers/bench.lock .venv/bin/python bench/defaults.py            # about 2-3 minutes idle
    .venv/bin/python bench/defaults.py --only digits,wine --seeds 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.jobs.schemas import DEFAULTS  # noqa: E402
from tests.service.test_job_defaults import load_split, ours, sklearn_default  # noqa: E402

NAMES = ["digits", "wine", "breast_cancer", "diabetes", "mnist"]
OLD = {"epochs": 10, "batch_size": 32, "optimizer": {"type": "adam", "learning_rate": 0.001}, "weight_decay": 0.0,
       "lr_schedule": None, "output_bias": "zeros"}


def timed(fn, *args, **kw) -> tuple[float, float]:
    t0 = time.perf_counter()
    value = fn(*args, **kw)
    return value, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(NAMES), help="comma-separated data sets")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of ours on MNIST")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"job defaults: {DEFAULTS}")
    print(f"{'data set':14s} {'metric':8s} {'ours':>8s} {'(s)':>6s} {'old':>8s} {'(s)':>6s} {'sklearn':>8s} "
          f"{'(s)':>6s} {'margin':>8s}")
    for name in args.only.split(","):
        split = load_split(name)
        mine, t_mine = timed(ours, *split)
        old, t_old = timed(ours, *split, **OLD)
        theirs, t_theirs = timed(sklearn_default, *split)
        metric = "R2" if split[-1] == "regression" else "accuracy"
        print(f"{name:14s} {metric:8s} {mine:8.4f} {t_mine:6.1f} {old:8.4f} {t_old:6.1f} {theirs:8.4f} "
              f"{t_theirs:6.1f} {mine - theirs:+8.4f}", flush=True)
        if name == "mnist":
            for seed in [int(x) for x in args.seeds.split(",") if x.strip() and int(x) != 0]:
                v, t = timed(ours, *split, seed=seed)
                print(f"{'  seed ' + str(seed):14s} {metric:8s} {v:8.4f} {t:6.1f} {'':8s} {'':6s} {'':8s} {'':6s} "
                      f"{v - theirs:+8.4f}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
