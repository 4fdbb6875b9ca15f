"""The engine's tables are the one home of each rule: monitors, layer types, what a loss needs."""
from __future__ import annotations

import numpy as np
import pytest

from core import LAYERS, LOSSES, MONITORS, Layer, Network, count_params, fit, monitors_for, normalize_spec


def _data(task: str, n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    if task == "classification":
        return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)
    return X, X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)


@pytest.mark.parametrize("task, spec", [
    ("classification", {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
                        "loss": "cross_entropy"}),
    ("regression", {"layers": [{"type": "dense", "units": 1}], "loss": "mse"}),
])
def test_every_monitor_of_a_task_is_a_metric_fit_writes_and_early_stopping_accepts(task, spec):
    X, y = _data(task)
    history = fit(Network.from_spec(spec), X, y, epochs=1, validation_split=0.25)
    names = monitors_for(task, n_classes=3 if task == "classification" else None)  # val_auc is binary-only
    assert set(names) <= set(history[0])
    other = [m for m in MONITORS if m not in names]
    assert not set(other) & set(history[0])
    for name in names:
        assert MONITORS[name].needs_validation == name.startswith("val_")
        h = fit(Network.from_spec(spec), X, y, epochs=2, validation_split=0.25,
                early_stopping={"monitor": name, "patience": 1})
        assert h.best_epoch in (1, 2)
    with pytest.raises(ValueError, match=f"early_stopping.monitor must be one of {', '.join(names)}, "):
        fit(Network.from_spec(spec), X, y, epochs=1, validation_split=0.25,
            early_stopping={"monitor": other[-1]})


def test_monitor_direction_decides_the_best_epoch():
    # accuracy is maximised, the loss minimised: the best epoch follows the table's direction
    assert MONITORS["val_accuracy"].maximize and MONITORS["val_r2"].maximize
    assert not MONITORS["val_loss"].maximize and not MONITORS["train_mae"].maximize
    X, y = _data("regression")
    spec = {"layers": [{"type": "dense", "units": 1}], "loss": "mse"}
    h = fit(Network.from_spec(spec), X, y, epochs=6, validation_split=0.25,
            optimizer={"type": "sgd", "learning_rate": 0.05}, early_stopping={"monitor": "val_r2"})
    assert h.best_epoch == max(range(len(h)), key=lambda i: h[i]["val_r2"]) + 1


class _Scale(Layer):
    """A test-only layer type: ``y = x * factor`` with one learnt factor per input."""

    type = "scale"
    fields = ("factor",)

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    @classmethod
    def normalize(cls, cfg, where):
        factor = cfg.get("factor")
        if not isinstance(factor, (int, float)) or factor <= 0:
            raise ValueError(f"{where}.factor must be > 0, got {factor!r}")
        return {"type": "scale", "factor": float(factor)}

    @classmethod
    def spec_n_params(cls, cfg, input_dim):
        return input_dim

    def build(self, input_dim, rng, dtype=np.float32):
        super().build(input_dim, rng, dtype)
        self.params = {"s": np.full(input_dim, self.factor, dtype=self.dtype)}
        self.grads = {"s": np.zeros(input_dim, dtype=self.dtype)}
        return input_dim

    def forward(self, x, training=False):
        if training:
            self._x = x
        return x * self.params["s"]

    def backward(self, grad, need_input_grad=True, sgd_step=False):
        self.grads["s"][...] = (grad * self._x).sum(axis=0)
        return grad * self.params["s"]

    def spec(self):
        return {"type": "scale", "factor": self.factor}


def test_a_layer_type_is_one_class_registered_in_layers(monkeypatch):
    monkeypatch.setitem(LAYERS, "scale", _Scale)
    spec = {"layers": [{"type": "scale", "factor": 2},
                       {"type": "dense", "units": 2, "activation": "softmax"}],
            "loss": "cross_entropy", "input_dim": 3}
    assert normalize_spec(spec)["layers"][0] == {"type": "scale", "factor": 2.0}
    assert count_params(spec) == 3 + (3 * 2 + 2)
    with pytest.raises(ValueError, match=r"^layers\[0\]\.factor must be > 0, got 0$"):
        normalize_spec({**spec, "layers": [{"type": "scale", "factor": 0}, spec["layers"][1]]})
    with pytest.raises(ValueError, match=r"^layers\[0\]\.units: unknown field for a scale layer$"):
        normalize_spec({**spec, "layers": [{"type": "scale", "factor": 1, "units": 3}, spec["layers"][1]]})
    with pytest.raises(ValueError, match=r"^layers\[0\]\.type must be one of dense, activation, dropout, batch_norm, "
                                         r"scale, got 'conv'$"):
        normalize_spec({**spec, "layers": [{"type": "conv"}, spec["layers"][1]]})
    net = Network.from_spec(spec, seed=0)
    assert isinstance(net.layers[0], _Scale) and net.n_params == 11
    X, y = _data("classification")
    fit(net, X, (y > 0).astype(np.int64), epochs=3, optimizer={"type": "adam", "learning_rate": 0.05})
    assert not np.allclose(net.layers[0].params["s"], 2.0)  # trained through backpropagation


def test_each_loss_declares_the_output_it_needs():
    assert LOSSES["binary_cross_entropy"].output_units(2) == 1
    assert LOSSES["cross_entropy"].output_units(5) == 5
    assert LOSSES["mse"].output_units(3) == 3
    assert LOSSES["binary_cross_entropy"].n_classes == 2 and LOSSES["cross_entropy"].n_classes is None
    with pytest.raises(ValueError, match="^layers: binary_cross_entropy needs exactly 1 output unit, got 2$"):
        LOSSES["binary_cross_entropy"].check_output(2, "sigmoid")
    with pytest.raises(ValueError, match="^loss: mae cannot follow a softmax output; use cross_entropy$"):
        LOSSES["mae"].check_output(3, "softmax")
    LOSSES["mse"].check_output(4, "relu")


def test_labels_are_read_by_the_loss_from_logits_or_probabilities():
    bce, ce = LOSSES["binary_cross_entropy"], LOSSES["cross_entropy"]
    z = np.array([[-2.0], [0.0], [1e-3], [3.0]], dtype=np.float32)
    p = 1 / (1 + np.exp(-z))
    assert bce.labels(z).tolist() == [0, 0, 1, 1]
    assert bce.labels(p, probabilities=True).tolist() == [0, 0, 1, 1]
    # predict_proba's two columns: the positive class is the last one
    assert bce.labels(np.hstack([1 - p, p]), probabilities=True).tolist() == [0, 0, 1, 1]
    assert bce.labels(z).dtype == np.int64
    assert ce.labels(np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="^loss mse is for regression: its outputs are not class labels$"):
        LOSSES["mse"].labels(z)
