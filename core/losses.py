"""Losses, keyed by the names the API accepts.

A loss sees the network's final output. Where the loss is *fused* with the
output activation (``fused_activation``), the network hands it the
pre-activation values (logits) instead, and the loss applies the activation
itself; the fused gradients are the well-known simple forms:

* softmax + cross_entropy:          dL/dz = (p - onehot(y)) / n
* sigmoid + binary_cross_entropy:   dL/dz = (p - y) / n
* linear + mse:                     dL/dz = 2 (y_pred - y) / (n * m)

All values are means over the samples (and outputs, for regression).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .activations import ACTIVATIONS

_TINY = 1e-12


class Loss(ABC):
    """Base class.

    ``value(out, y)`` returns the mean loss and may transform ``out`` in place
    (fused losses turn logits into probabilities); ``gradient(out, y, scale)``
    must be called right after ``value`` on the same ``out`` and overwrites it
    with ``scale * dL/d(out)`` (or ``dL/dz`` when fused).
    """

    name = ""
    fused_activation: str | None = None
    # Output activations this loss may follow; None means "any but softmax".
    allowed_activations: tuple[str, ...] | None = None
    task = "regression"

    @abstractmethod
    def value(self, out: np.ndarray, y: np.ndarray) -> float:
        ...

    @abstractmethod
    def gradient(self, out: np.ndarray, y: np.ndarray, scale: float = 1.0) -> np.ndarray:
        ...


_ROWS: dict[int, np.ndarray] = {}


def _rows(n: int) -> np.ndarray:
    """A cached ``arange(n)`` for picking one entry per row."""
    rows = _ROWS.get(n)
    if rows is None:
        rows = _ROWS[n] = np.arange(n)
        rows.flags.writeable = False
    return rows


class CrossEntropy(Loss):
    """Multi-class cross-entropy on integer labels, fused with softmax."""

    name = "cross_entropy"
    fused_activation = "softmax"
    allowed_activations = ("softmax",)
    task = "classification"

    def value(self, out, y):
        # out holds logits (n, k); turned into probabilities in place.
        n = out.shape[0]
        out -= out.max(axis=1, keepdims=True)
        picked_sum = float(out[_rows(n), y].sum())
        np.exp(out, out=out)
        s = out.sum(axis=1, keepdims=True)
        loss = (float(np.log(s).sum()) - picked_sum) / n
        out /= s
        return loss

    def gradient(self, out, y, scale=1.0):
        n = out.shape[0]
        out[_rows(n), y] -= 1
        out *= scale / n
        return out


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on 0/1 labels, fused with a one-unit sigmoid."""

    name = "binary_cross_entropy"
    fused_activation = "sigmoid"
    allowed_activations = ("sigmoid",)
    task = "classification"

    def value(self, out, y):
        # out holds logits (n, 1); loss = softplus(z) - z*y, stable for large |z|.
        z = out[:, 0]
        yf = y.astype(out.dtype, copy=False)
        loss = np.maximum(z, 0) - z * yf + np.log1p(np.exp(-np.abs(z)))
        value = float(np.mean(loss))
        ACTIVATIONS["sigmoid"].forward(out, out=out)
        return value

    def gradient(self, out, y, scale=1.0):
        n = out.shape[0]
        out[:, 0] -= y
        out *= scale / n
        return out


class MeanSquaredError(Loss):
    name = "mse"

    def value(self, out, y):
        d = out - y.reshape(out.shape)
        return float(np.mean(d * d))

    def gradient(self, out, y, scale=1.0):
        out -= y.reshape(out.shape)
        out *= 2.0 * scale / out.size
        return out


class MeanAbsoluteError(Loss):
    name = "mae"

    def value(self, out, y):
        return float(np.mean(np.abs(out - y.reshape(out.shape))))

    def gradient(self, out, y, scale=1.0):
        out -= y.reshape(out.shape)
        np.sign(out, out=out)
        out *= scale / out.size
        return out


class _UnfusedCrossEntropy(Loss):
    """Cross-entropy on probabilities (used only to check the fused form)."""

    name = "cross_entropy_probs"

    def value(self, out, y):
        n = out.shape[0]
        return float(-np.mean(np.log(np.maximum(out[np.arange(n), y], _TINY))))

    def gradient(self, out, y, scale=1.0):
        n = out.shape[0]
        g = np.zeros_like(out)
        g[np.arange(n), y] = -1.0 / np.maximum(out[np.arange(n), y], _TINY)
        out[...] = g * (scale / n)
        return out


class _UnfusedBinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities (used only to check the fused form)."""

    name = "binary_cross_entropy_probs"

    def value(self, out, y):
        p = np.clip(out[:, 0], _TINY, 1 - _TINY)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))

    def gradient(self, out, y, scale=1.0):
        n = out.shape[0]
        p = np.clip(out[:, 0], _TINY, 1 - _TINY)
        out[:, 0] = (p - y) / (p * (1 - p)) * (scale / n)
        return out


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (CrossEntropy(), BinaryCrossEntropy(), MeanSquaredError(), MeanAbsoluteError())
}
UNFUSED_LOSSES: dict[str, Loss] = {
    "cross_entropy": _UnfusedCrossEntropy(),
    "binary_cross_entropy": _UnfusedBinaryCrossEntropy(),
    "mse": LOSSES["mse"],
    "mae": LOSSES["mae"],
}
