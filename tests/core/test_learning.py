"""The engine learns: held-out accuracy / R² thresholds on data the tests
generate or scikit-learn ships (no downloads)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, make_circles, make_moons
from sklearn.model_selection import train_test_split

from core import Network, fit


def split(X, y, seed=0, test_size=0.25, stratify=True):
    return train_test_split(X, y, test_size=test_size, random_state=seed,
                            stratify=y if stratify else None)


def one_hidden(units, k, activation="tanh"):
    out = ({"type": "dense", "units": 1, "activation": "sigmoid"}, "binary_cross_entropy") if k == 2 \
        else ({"type": "dense", "units": k, "activation": "softmax"}, "cross_entropy")
    return {"layers": [{"type": "dense", "units": units, "activation": activation}, out[0]],
            "loss": out[1]}


def accuracy(net, X, y):
    return float((net.predict(X) == y).mean())


def r2(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    return 1 - ((y_true - y_pred) ** 2).sum(axis=0) / ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)


# ------------------------------------------------- not linearly separable
def test_two_moons():
    X, y = make_moons(n_samples=1000, noise=0.1, random_state=0)
    Xtr, Xte, ytr, yte = split(X, y)
    net = Network.from_spec(one_hidden(32, 2))
    fit(net, Xtr, ytr, epochs=60, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.01}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.97


def test_concentric_circles():
    X, y = make_circles(n_samples=1000, noise=0.05, factor=0.5, random_state=0)
    Xtr, Xte, ytr, yte = split(X, y)
    net = Network.from_spec(one_hidden(32, 2, activation="relu"))
    fit(net, Xtr, ytr, epochs=60, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.01}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.97


def test_xor():
    # Four quadrants; label = sign(x0) xor sign(x1). Points closer than 0.05 to an axis are dropped
    # (the label flips there, so no model gets those right).
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (1600, 2))
    X = X[np.abs(X).min(axis=1) > 0.05]
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    Xtr, Xte, ytr, yte = split(X, y)
    # multi-class head (2-way softmax) here, the binary sigmoid head in moons/circles
    spec = {"layers": [{"type": "dense", "units": 16, "activation": "tanh"},
                       {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    fit(net, Xtr, ytr, epochs=80, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.02}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.97


def test_linear_model_cannot_learn_xor():
    """The control: without a hidden layer XOR stays near chance."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (800, 2))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}],
                             "loss": "binary_cross_entropy"})
    fit(net, X, y, epochs=30, optimizer={"type": "adam", "learning_rate": 0.01})
    assert accuracy(net, X, y) < 0.7


# ---------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return split(X.astype(np.float32), y, seed=1)


def test_digits_one_hidden_layer(digits):
    Xtr, Xte, ytr, yte = digits
    net = Network.from_spec(one_hidden(64, 10, activation="relu"))
    history = fit(net, Xtr, ytr, epochs=30, batch_size=32, standardize=True,
                  optimizer={"type": "adam", "learning_rate": 1e-3}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.95
    assert history[-1]["train_accuracy"] > 0.98


@pytest.mark.parametrize("hidden, threshold", [((), 0.93), ((64,), 0.95), ((64, 32), 0.94)])
def test_digits_one_two_three_layer_perceptrons_train(digits, hidden, threshold):
    """The course lab: 1-, 2- and 3-layer perceptrons (0, 1, 2 hidden layers), plain SGD with momentum."""
    Xtr, Xte, ytr, yte = digits
    layers = [{"type": "dense", "units": u, "activation": "relu"} for u in hidden]
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    net = Network.from_spec({"layers": layers, "loss": "cross_entropy"})
    history = fit(net, Xtr, ytr, epochs=25, batch_size=32, standardize=True,
                  optimizer={"type": "sgd", "learning_rate": 0.02, "momentum": 0.9}, seed=0,
                  validation=(Xte, yte))
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert accuracy(net, Xte, yte) >= threshold
    assert history[-1]["val_accuracy"] == pytest.approx(accuracy(net, Xte, yte))


def test_digits_with_dropout_and_sigmoid_hidden(digits):
    Xtr, Xte, ytr, yte = digits
    spec = {"layers": [{"type": "dense", "units": 128, "activation": "sigmoid", "init": "glorot"},
                       {"type": "dropout", "rate": 0.2},
                       {"type": "dense", "units": 64, "activation": "leaky_relu", "init": "he"},
                       {"type": "dense", "units": 10, "activation": "softmax", "init": "normal"}],
            "loss": "cross_entropy"}
    net = Network.from_spec(spec)
    fit(net, Xtr, ytr, epochs=30, batch_size=32, standardize=True,
        optimizer={"type": "adam", "learning_rate": 2e-3}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.95


# --------------------------------------------------------- breast cancer
def test_breast_cancer_binary():
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = split(X, y, seed=0)
    net = Network.from_spec(one_hidden(16, 2, activation="relu"))
    fit(net, Xtr, ytr, epochs=40, batch_size=16, standardize=True,
        optimizer={"type": "adam", "learning_rate": 1e-3}, seed=0)
    assert accuracy(net, Xte, yte) >= 0.94
    proba = net.predict_proba(Xte)
    assert proba.shape == (len(Xte), 2)


# ------------------------------------------------------------- regression
def sine(seed: int):
    """1,500 noisy rows of y = sin(x) on [-3, 3], split into (Xtr, Xte, ytr, yte)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (1500, 1))
    y = np.sin(X[:, 0]) + rng.normal(0, 0.1, 1500)
    return split(X, y, stratify=False)


def test_sine_regression():
    Xtr, Xte, ytr, yte = sine(0)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 32, "activation": "tanh"},
                                        {"type": "dense", "units": 1, "activation": "linear"}],
                             "loss": "mse"})
    history = fit(net, Xtr, ytr, epochs=60, batch_size=32, validation=(Xte, yte),
                  optimizer={"type": "adam", "learning_rate": 0.01}, seed=0)
    pred = net.predict(Xte)
    assert pred.shape == yte.shape
    assert r2(yte, pred) >= 0.9
    assert history[-1]["val_r2"] == pytest.approx(r2(yte, pred), abs=1e-4)
    assert history[-1]["val_rmse"] < 0.2


def test_sine_regression_mae_loss():
    Xtr, Xte, ytr, yte = sine(1)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 32, "activation": "tanh"},
                                        {"type": "dense", "units": 1}], "loss": "mae"})
    fit(net, Xtr, ytr, epochs=60, batch_size=32, optimizer={"type": "adam", "learning_rate": 0.01}, seed=0)
    assert r2(yte, net.predict(Xte)) >= 0.9


def test_multi_output_regression():
    rng = np.random.default_rng(2)
    X = rng.uniform(-2, 2, (2000, 3))
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1], X[:, 1] * X[:, 2], np.cos(X[:, 2])])
    Y += rng.normal(0, 0.05, Y.shape)
    Xtr, Xte, Ytr, Yte = split(X, Y, stratify=False)
    net = Network.from_spec({"layers": [{"type": "dense", "units": 64, "activation": "tanh"},
                                        {"type": "dense", "units": 32, "activation": "tanh"},
                                        {"type": "dense", "units": 3}], "loss": "mse"})
    history = fit(net, Xtr, Ytr, epochs=60, batch_size=32, validation=(Xte, Yte),
                  optimizer={"type": "adam", "learning_rate": 3e-3}, seed=0)
    pred = net.predict(Xte)
    assert pred.shape == (len(Xte), 3)
    scores = r2(Yte, pred)
    assert (scores >= 0.9).all(), scores
    # val_r2 of several outputs is the plain mean of their R² (scikit-learn's default)
    assert history[-1]["val_r2"] == pytest.approx(scores.mean(), abs=1e-4)
