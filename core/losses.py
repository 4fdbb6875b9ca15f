"""Losses, keyed by the names the API accepts.

A loss sees the network's final output. Where the loss is *fused* with the
output activation (``fused_activation``), the network hands it the
pre-activation values (logits) instead, and the loss applies the activation
itself; the fused gradients are the well-known simple forms:

* softmax + cross_entropy:          dL/dz = (p - onehot(y)) / n
* sigmoid + binary_cross_entropy:   dL/dz = (p - y) / n
* linear + mse:                     dL/dz = 2 (y_pred - y) / (n * m)

All values are means over the samples (and outputs, for regression). With
per-sample weights ``w`` (class weights, a sample-weight column) a value is
``sum_i w_i l_i / n`` (Keras' ``sample_weight`` convention: the weights
scale each row's share; all ones give the plain mean), and so is its gradient.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .activations import ACTIVATIONS

_TINY = 1e-12


class Loss(ABC):
    """Base class: a loss, what output it needs, and how labels are read from it.

    ``value(out, y)`` returns the mean loss and may transform ``out`` in place
    (fused losses turn logits into probabilities); ``gradient(out, y, scale)``
    must be called right after ``value`` on the same ``out`` and overwrites it
    with ``scale * dL/d(out)`` (or ``dL/dz`` when fused).

    A new loss declares its output here too: ``allowed_activations`` and
    ``check_units`` (what ``normalize_spec`` enforces), ``n_classes`` and
    ``output_units`` (how many output units a data set needs), ``labels``
    (classification only).
    """

    name = ""
    fused_activation: str | None = None
    # Output activations this loss may follow; None means "any but softmax".
    allowed_activations: tuple[str, ...] | None = None
    task = "regression"
    # Exactly this many classes (binary: 2); None: any number (or regression).
    n_classes: int | None = None
    # How the output width follows from the data, as error messages say it.
    units_rule = "n_outputs"

    @abstractmethod
    def value(self, out: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
        """Mean loss over the samples (and outputs, for regression).

        Parameters
        ----------
        out : ndarray of shape (n_samples, n_outputs), float32 or float64
            The network's output; logits when the loss is fused with the output
            activation. May be overwritten: afterwards it holds the network's
            outputs with the activation applied (probabilities when fused).
        y : ndarray of shape (n_samples,) int64 class indices, or (n_samples, n_outputs) floats
            The targets.
        w : ndarray of shape (n_samples,), the dtype of ``out``, or None
            Per-sample weights: the value is ``sum_i w_i l_i / n``.

        Returns
        -------
        float
            The mean loss (NaN or infinite when training diverges).
        """

    @abstractmethod
    def gradient(self, out: np.ndarray, y: np.ndarray, scale: float = 1.0,
                 w: np.ndarray | None = None) -> np.ndarray:
        """Overwrite ``out`` with ``scale * dL/d(out)`` (``dL/dz`` when fused).

        Parameters
        ----------
        out : ndarray of shape (n_samples, n_outputs), float32 or float64
            The array ``value`` was just called on (in the state it left it).
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The same targets as given to ``value``.
        scale : float
            Factor folded into the gradient (the learning rate, for plain SGD).
        w : ndarray of shape (n_samples,), or None
            The same per-sample weights as given to ``value``.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
            ``out`` itself, now holding the gradient of the mean loss.
        """

    def check_output(self, units: int, activation: str) -> None:
        """Refuse an output layer this loss cannot follow.

        Parameters
        ----------
        units : int
            Width of the network's output (units of the last dense layer).
        activation : str
            The output activation, a key of ``ACTIVATIONS``.

        Raises
        ------
        ValueError
            Naming the loss, the activation it needs or the unit count.
        """
        if self.allowed_activations is not None and activation not in self.allowed_activations:
            raise ValueError(
                f"loss: {self.name} needs a {' or '.join(self.allowed_activations)} output activation, "
                f"but the last layer's activation is {activation}")
        if self.allowed_activations is None and activation == "softmax":
            raise ValueError(f"loss: {self.name} cannot follow a softmax output; use cross_entropy")
        self.check_units(units)

    def check_units(self, units: int) -> None:
        """Refuse an output width this loss cannot use (any width >= 1 here).

        Parameters
        ----------
        units : int
            Width of the network's output.

        Raises
        ------
        ValueError
            When the width does not suit the loss.
        """

    def output_units(self, n_targets: int) -> int:
        """Output units a network needs for a data set.

        Parameters
        ----------
        n_targets : int
            Number of classes (classification) or target columns (regression).

        Returns
        -------
        int
            One unit per class or target column here.
        """
        return n_targets

    def labels(self, out: np.ndarray, *, probabilities: bool = False) -> np.ndarray:
        """Class indices read from network outputs (classification losses only).

        Parameters
        ----------
        out : ndarray of shape (n_samples, n_outputs)
            The network's raw outputs (logits, for a fused loss), or with
            ``probabilities`` its outputs after the output activation.
            ``predict_proba``'s two binary columns work too.
        probabilities : bool
            Whether ``out`` holds activated outputs rather than logits.

        Returns
        -------
        ndarray of shape (n_samples,), int64

        Raises
        ------
        ValueError
            For a regression loss.
        """
        raise ValueError(f"loss {self.name} is for regression: its outputs are not class labels")


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
    units_rule = "softmax needs one unit per class"

    def value(self, out, y, w=None):
        # out holds logits (n, k); turned into probabilities in place.
        n = out.shape[0]
        out -= out.max(axis=1, keepdims=True)
        picked = out[_rows(n), y]
        np.exp(out, out=out)
        s = out.sum(axis=1, keepdims=True)
        if w is None:
            loss = (float(np.log(s).sum()) - float(picked.sum())) / n
        else:
            loss = float(np.dot(w, np.log(s[:, 0]) - picked)) / n
        out /= s
        return loss

    def gradient(self, out, y, scale=1.0, w=None):
        n = out.shape[0]
        out[_rows(n), y] -= 1
        out *= scale / n
        if w is not None:
            out *= w[:, None]
        return out

    def check_units(self, units):
        if units < 2:
            raise ValueError(f"layers: cross_entropy needs >= 2 output units, got {units}; "
                             "for two classes use 1 sigmoid unit with binary_cross_entropy")

    def labels(self, out, *, probabilities=False):
        # softmax is monotone: the largest logit is the largest probability
        return out.argmax(axis=1)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on 0/1 labels, fused with a one-unit sigmoid."""

    name = "binary_cross_entropy"
    fused_activation = "sigmoid"
    allowed_activations = ("sigmoid",)
    task = "classification"
    n_classes = 2
    units_rule = "a sigmoid output needs 1 unit"

    def value(self, out, y, w=None):
        # out holds logits (n, 1); loss = softplus(z) - z*y, stable for large |z|.
        z = out[:, 0]
        yf = y.astype(out.dtype, copy=False)
        loss = np.maximum(z, 0) - z * yf + np.log1p(np.exp(-np.abs(z)))
        value = float(np.mean(loss)) if w is None else float(np.dot(w, loss)) / len(loss)
        ACTIVATIONS["sigmoid"].forward(out, out=out)
        return value

    def gradient(self, out, y, scale=1.0, w=None):
        n = out.shape[0]
        out[:, 0] -= y
        out *= scale / n
        if w is not None:
            out *= w[:, None]
        return out

    def check_units(self, units):
        if units != 1:
            raise ValueError(f"layers: binary_cross_entropy needs exactly 1 output unit, got {units}")

    def output_units(self, n_targets):
        return 1

    def labels(self, out, *, probabilities=False):
        # The last column is the positive class's score; sigmoid(z) > 0.5 iff z > 0.
        return (out[:, -1] > (0.5 if probabilities else 0)).astype(np.int64)


class MeanSquaredError(Loss):
    """Mean squared error over samples and outputs."""

    name = "mse"

    def value(self, out, y, w=None):
        d = out - y.reshape(out.shape)
        return _weighted_mean(d * d, w)

    def gradient(self, out, y, scale=1.0, w=None):
        out -= y.reshape(out.shape)
        out *= 2.0 * scale / out.size
        return _times_weights(out, w)


class MeanAbsoluteError(Loss):
    """Mean absolute error over samples and outputs."""

    name = "mae"

    def value(self, out, y, w=None):
        return _weighted_mean(np.abs(out - y.reshape(out.shape)), w)

    def gradient(self, out, y, scale=1.0, w=None):
        out -= y.reshape(out.shape)
        np.sign(out, out=out)
        out *= scale / out.size
        return _times_weights(out, w)


class Huber(Loss):
    """Huber loss (PyTorch's ``HuberLoss``, Keras' ``Huber``), mean over samples and outputs:
    ``d^2 / 2`` where ``|d| <= delta``, else ``delta (|d| - delta / 2)``; its gradient is
    ``clip(d, -delta, delta)``. ``delta`` is set by ``with_delta`` (default 1.0)."""

    name = "huber"

    def __init__(self, delta: float = 1.0):
        self.delta = float(delta)

    def with_delta(self, delta: float) -> "Huber":
        """This loss with another ``delta``.

        Parameters
        ----------
        delta : float
            > 0.

        Returns
        -------
        Huber

        Raises
        ------
        ValueError
            When ``delta`` is not a positive number.
        """
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0 \
                or delta == float("inf"):
            raise ValueError(f"huber_delta must be a number > 0, got {delta!r}")
        return self if float(delta) == self.delta else Huber(delta)

    def value(self, out, y, w=None):
        a = np.abs(out - y.reshape(out.shape))
        small = np.minimum(a, self.delta)
        # 0.5 min(a, delta)^2 + delta (a - min(a, delta)) is both branches at once.
        loss = 0.5 * small * small + self.delta * (a - small)
        return _weighted_mean(loss, w)

    def gradient(self, out, y, scale=1.0, w=None):
        out -= y.reshape(out.shape)
        np.clip(out, -self.delta, self.delta, out=out)
        out *= scale / out.size
        return _times_weights(out, w)


def _weighted_mean(per_entry: np.ndarray, w: np.ndarray | None) -> float:
    """Mean of (n, m) per-entry losses; with row weights, ``sum_i w_i mean_j l_ij / n``."""
    if w is None:
        return float(np.mean(per_entry))
    return float(np.dot(w, per_entry.mean(axis=1))) / per_entry.shape[0]


def _times_weights(grad: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    if w is not None:
        grad *= w[:, None]
    return grad


class _UnfusedCrossEntropy(Loss):
    """Cross-entropy on probabilities (used only to check the fused form)."""

    name = "cross_entropy_probs"

    def value(self, out, y, w=None):
        n = out.shape[0]
        return _weighted_mean(-np.log(np.maximum(out[np.arange(n), y], _TINY))[:, None], w)

    def gradient(self, out, y, scale=1.0, w=None):
        n = out.shape[0]
        g = np.zeros_like(out)
        g[np.arange(n), y] = -1.0 / np.maximum(out[np.arange(n), y], _TINY)
        out[...] = g * (scale / n)
        return _times_weights(out, w)


class _UnfusedBinaryCrossEntropy(Loss):
    """Binary cross-entropy on probabilities (used only to check the fused form)."""

    name = "binary_cross_entropy_probs"

    def value(self, out, y, w=None):
        p = np.clip(out[:, 0], _TINY, 1 - _TINY)
        return _weighted_mean(-(y * np.log(p) + (1 - y) * np.log1p(-p))[:, None], w)

    def gradient(self, out, y, scale=1.0, w=None):
        n = out.shape[0]
        p = np.clip(out[:, 0], _TINY, 1 - _TINY)
        out[:, 0] = (p - y) / (p * (1 - p)) * (scale / n)
        return _times_weights(out, w)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (CrossEntropy(), BinaryCrossEntropy(), MeanSquaredError(), MeanAbsoluteError(), Huber())
}
UNFUSED_LOSSES: dict[str, Loss] = {
    "cross_entropy": _UnfusedCrossEntropy(),
    "binary_cross_entropy": _UnfusedBinaryCrossEntropy(),
    "mse": LOSSES["mse"],
    "mae": LOSSES["mae"],
    "huber": LOSSES["huber"],
}
