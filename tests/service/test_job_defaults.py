"""Defaults that win: a job with only network_id and dataset_id does at least as well as scikit-learn's
MLPClassifier / MLPRegressor with their defaults, on the same split and the same architecture (one hidden layer of
100 relu units).

Ours is trained the way a worker trains the job: the job schema's defaults (``TrainingParams()``) turned into
``core.fit`` options by the worker's own ``fit_options``. Scikit-learn is fitted here, in the same run, on the four
bundled data sets and on MNIST (8,000 training / 2,000 test rows of tests/data/mnist; 87 iterations, about 20 s on
one core). ``bench/defaults.py`` prints the whole margin table.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor

import core
from service.executor.worker import fit_options
from service.jobs.schemas import TrainingParams

MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"
LOADERS = {"digits": datasets.load_digits, "wine": datasets.load_wine,
           "breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}


def load_split(name: str):
    """(X_train, X_test, y_train, y_test, task): a bundled data set split 75/25 (stratified for classes,
    random_state 0), or MNIST's first 8,000 test-set images to train and the last 2,000 to test."""
    if name == "mnist":
        X = np.frombuffer(gzip.open(MNIST / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
        X = X.reshape(-1, 784).astype(np.float32) / 255
        y = np.frombuffer(gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
        return X[:8000], X[8000:], y[:8000], y[8000:], "classification"
    X, y = LOADERS[name](return_X_y=True)
    task = "regression" if name == "diabetes" else "classification"
    parts = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y if task == "classification" else None)
    return (*parts, task)


def network_spec(task: str, n_classes: int) -> dict:
    """scikit-learn's default architecture: 100 relu units, then its output (softmax, logistic or identity)."""
    out = ({"type": "dense", "units": 1, "activation": "linear"} if task == "regression" else
           {"type": "dense", "units": 1, "activation": "sigmoid"} if n_classes == 2 else
           {"type": "dense", "units": n_classes, "activation": "softmax"})
    loss = {"regression": "mse", "binary": "binary_cross_entropy"}.get(
        "binary" if task == "classification" and n_classes == 2 else task, "cross_entropy")
    return {"layers": [{"type": "dense", "units": 100, "activation": "relu"}, out], "loss": loss}


def ours(X_tr, X_te, y_tr, y_te, task: str, **fields) -> float:
    """Test accuracy (classification) or R² (regression) of a job with the defaults (and ``fields`` of the body)."""
    n_classes = int(y_tr.max()) + 1 if task == "classification" else 0
    dataset = SimpleNamespace(columns=None, feature_names=None, n_features=X_tr.shape[1],
                              classes=list(range(n_classes)) or None)
    net = core.Network.from_spec(network_spec(task, n_classes))
    core.fit(net, X_tr, y_tr, **fit_options(TrainingParams(**fields).model_dump(mode="json"), dataset))
    pred = np.asarray(net.predict(X_te)).reshape(len(y_te))
    if task == "classification":
        return float(np.mean(pred == y_te))
    return float(1 - np.sum((y_te - pred) ** 2) / np.sum((y_te - y_te.mean()) ** 2))


def sklearn_default(X_tr, X_te, y_tr, y_te, task: str) -> float:
    model = MLPClassifier(random_state=0) if task == "classification" else MLPRegressor(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=200 is its default too
        model.fit(X_tr, y_tr)
    return float(model.score(X_te, y_te))


@pytest.mark.parametrize("name", ["digits", "wine", "breast_cancer", "diabetes", "mnist"])
def test_job_defaults_match_or_beat_sklearn_defaults(name):
    split = load_split(name)
    mine, theirs = ours(*split), sklearn_default(*split)
    assert mine >= theirs, f"{name}: ours {mine:.4f} < scikit-learn {theirs:.4f}"


def test_defaults_are_what_the_schema_and_readme_say():
    params = TrainingParams().model_dump(mode="json")
    assert (params["epochs"], params["batch_size"], params["weight_decay"], params["output_bias"]) == \
        (20, 64, 0.001, "target_mean")
    assert params["optimizer"]["type"] == "adam" and params["optimizer"]["learning_rate"] == 0.002
    assert params["lr_schedule"]["type"] == "cosine" and params["early_stopping"] is None
    # old request shapes keep their meaning: an explicit adam's rate, no schedule, adamw without L2 on top
    assert TrainingParams(optimizer={"type": "adam"}).optimizer.learning_rate == 0.001
    assert TrainingParams(lr_schedule=None).lr_schedule is None
    assert TrainingParams(optimizer={"type": "adamw"}).weight_decay == 0.0
    assert TrainingParams(optimizer={"type": "adamw"}, weight_decay=0.01).weight_decay == 0.01
