"""The course lab on real handwritten digits: MNIST's 10,000-image test set
(the only half on these machines), first 8,000 rows to train, last 2,000 to
test, a 784-128-10 network.

The files are in the repository (``tests/data/mnist``, see its README for the
source and licence), or wherever ``MLP_MNIST_DIR`` points. A missing file fails
the test: it is not skipped.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from core import Network, fit

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


def mnist_dir() -> Path:
    candidates = []
    if os.environ.get("MLP_MNIST_DIR"):
        candidates.append(Path(os.environ["MLP_MNIST_DIR"]))
    candidates.append(REPO_ROOT / "tests" / "data" / "mnist")
    for c in candidates:
        if (c / IMAGES).is_file() and (c / LABELS).is_file():
            return c
    pytest.fail(f"MNIST files {IMAGES} / {LABELS} not found in any of: "
                + ", ".join(str(c) for c in candidates) + " (set MLP_MNIST_DIR)")


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist():
    d = mnist_dir()
    X = read_idx(d / IMAGES, 16).reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx(d / LABELS, 8).astype(np.int64)
    assert X.shape == (10_000, 784) and y.shape == (10_000,)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    return X[:8000], y[:8000], X[8000:], y[8000:]


def test_mnist_784_128_10(mnist):
    Xtr, ytr, Xte, yte = mnist
    spec = {"input_dim": 784,
            "layers": [{"type": "dense", "units": 128, "activation": "relu"},
                       {"type": "dense", "units": 10, "activation": "softmax"}],
            "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    history = fit(net, Xtr, ytr, epochs=8, batch_size=64,
                  optimizer={"type": "adam", "learning_rate": 1e-3}, validation=(Xte, yte), seed=0)
    acc = float((net.predict(Xte) == yte).mean())
    assert acc >= 0.92, f"held-out accuracy {acc:.3f}"
    assert history[-1]["val_accuracy"] == pytest.approx(acc)
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
