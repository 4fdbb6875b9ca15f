"""One-row predict cost of the engine with and without the default preprocessing (issue 12), in process.

The network of the engine benchmark (784-256-128-10, softmax), trained one epoch on random pixel-like data
(many columns almost always 0) twice from the same seed: without preprocessing, and with the job body's default
preprocessing (mean imputation, standard scaling with its clip). For each, the median time of
``net.predict_proba(row)`` on one row (1,000 calls after warm-up, 5 interleaved repeats, median of medians),
and of ``net.preprocessor.transform(row)`` alone. Target (DESIGN.md): one-row predict <= 50 us.

    PYTHONPATH=. .venv/bin/python bench/predict_row.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Network, fit  # noqa: E402

SPEC = {"input_dim": 784, "layers": [{"type": "dense", "units": 256, "activation": "relu"},
                                     {"type": "dense", "units": 128, "activation": "relu"},
                                     {"type": "dense", "units": 10, "activation": "softmax"}],
        "loss": "cross_entropy"}


def median_us(f, row, calls: int = 1000) -> float:
    for _ in range(50):
        f(row)
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        f(row)
        lat.append(time.perf_counter() - t)
    return statistics.median(lat) * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((4000, 784)) < 0.2) * rng.random((4000, 784)) * 255      # pixel-like: mostly 0
    y = rng.integers(0, 10, 4000)
    plain = Network.from_spec(SPEC)
    fit(plain, X, y, epochs=1, batch_size=128, seed=0)
    prep = Network.from_spec(SPEC)
    fit(prep, X, y, epochs=1, batch_size=128, seed=0, preprocessing={})
    row = X[:1].astype(np.float32)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    res: dict[str, list[float]] = {"predict_proba, no preprocessing": [], "predict_proba, default preprocessing": [],
                                   "preprocessor.transform alone": []}
    for _ in range(5):
        res["predict_proba, no preprocessing"].append(median_us(plain.predict_proba, row))
        res["predict_proba, default preprocessing"].append(median_us(prep.predict_proba, row))
        res["preprocessor.transform alone"].append(median_us(prep.preprocessor.transform, row))
    for k, v in res.items():
        print(f"  {k:40s} {statistics.median(v):7.1f} us   (repeats: {', '.join(f'{x:.1f}' for x in v)})")
    a, b = (statistics.median(res[k]) for k in list(res)[:2])
    print(f"  preprocessing share of a one-row predict: {(b - a) / b:.0%} (target: one-row predict <= 50 us)")


if __name__ == "__main__":
    main()
