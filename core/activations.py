"""Activation functions, keyed by the names the API accepts.

Each activation computes its output in place where the caller allows it and
takes its derivative from the cached *output* (``relu'`` from the sign of the
output, ``tanh'`` as ``1 - y*y``, ``sigmoid'`` as ``y * (1 - y)``), so no
pre-activation copy is kept.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

LEAKY_SLOPE = 0.01


class Activation(ABC):
    """An element-wise (or row-wise, for softmax) activation.

    ``forward(z, out)`` writes ``f(z)`` into ``out`` (which may be ``z``) and
    returns it; ``backward(y, grad)`` turns ``dL/dy`` into ``dL/dz`` in place
    using the cached output ``y`` and returns it.
    """

    name = ""

    @abstractmethod
    def forward(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The activation ``f(z)``.

        Parameters
        ----------
        z : ndarray of shape (n_samples, n_units), float32 or float64
            Pre-activations.
        out : ndarray of the same shape and dtype, or None
            Where to write the result; may be ``z`` itself. None: in place, into ``z``.

        Returns
        -------
        ndarray of shape (n_samples, n_units)
            ``out`` (or ``z``), holding ``f(z)``.
        """

    @abstractmethod
    def backward(self, y: np.ndarray, grad: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Turn ``dL/dy`` into ``dL/dz`` in place, from the cached output ``y = f(z)``.

        Parameters
        ----------
        y : ndarray of shape (n_samples, n_units), float32 or float64
            The output ``forward`` returned for this batch; not modified.
        grad : ndarray of the same shape and dtype
            ``dL/dy``; overwritten with ``dL/dz``.
        mask : ndarray of the same shape, bool, or None
            A caller-owned scratch buffer an activation may use (relu's mask)
            instead of allocating one.

        Returns
        -------
        ndarray of shape (n_samples, n_units)
            ``grad``, now ``dL/dz``.
        """


class Linear(Activation):
    """The identity ``f(z) = z``."""

    name = "linear"

    def forward(self, z, out=None):
        if out is None or out is z:
            return z
        np.copyto(out, z)
        return out

    def backward(self, y, grad, mask=None):
        return grad


_ZERO_ROWS: dict[tuple, np.ndarray] = {}


def _zero_row(z: np.ndarray) -> np.ndarray:
    """A cached, read-only row of zeros shaped (1, width) like ``z``'s rows.

    Two-dimensional on purpose: for a one-row ``z`` the shapes then match
    exactly and numpy takes its no-iterator fast path (~1 us instead of ~2).
    """
    key = (z.shape[-1], z.dtype)
    row = _ZERO_ROWS.get(key)
    if row is None:
        row = _ZERO_ROWS[key] = np.zeros((1, z.shape[-1]), dtype=z.dtype)
        row.flags.writeable = False
    return row if z.ndim == 2 else row[0]


class ReLU(Activation):
    """Rectified linear unit ``f(z) = max(z, 0)``; ``f'`` from the sign of the output."""

    name = "relu"

    def forward(self, z, out=None):
        # Against a row of zeros, np.maximum runs its SIMD loop; against the
        # scalar 0 it took 2-3x longer (numpy 2.4, float32). Same values, NaN kept.
        return np.maximum(z, _zero_row(z), out=z if out is None else out)

    def backward(self, y, grad, mask=None):
        # relu'(z) is 1 where the output is positive, else 0. A caller-owned
        # boolean buffer avoids allocating the mask on every batch.
        mask = np.greater(y, 0, out=mask)
        np.multiply(grad, mask, out=grad)
        return grad


class LeakyReLU(Activation):
    """``f(z) = z`` for ``z > 0``, else ``0.01 z`` (``LEAKY_SLOPE``)."""

    name = "leaky_relu"

    def forward(self, z, out=None):
        out = z if out is None else out
        # max(z, a*z) equals leaky relu for 0 < a < 1.
        return np.maximum(z, z * LEAKY_SLOPE, out=out)

    def backward(self, y, grad, mask=None):
        # The output has the sign of the input, so the mask comes from y.
        np.multiply(grad, LEAKY_SLOPE, out=grad, where=y <= 0)
        return grad


class Tanh(Activation):
    """Hyperbolic tangent; ``f' = 1 - y*y``."""

    name = "tanh"

    def forward(self, z, out=None):
        return np.tanh(z, out=z if out is None else out)

    def backward(self, y, grad, mask=None):
        grad *= 1 - y * y
        return grad


class Sigmoid(Activation):
    """Logistic ``f(z) = 1 / (1 + exp(-z))``; ``f' = y (1 - y)``."""

    name = "sigmoid"

    def forward(self, z, out=None):
        out = z if out is None else out
        # 0.5 * (1 + tanh(z/2)) never overflows, unlike 1 / (1 + exp(-z)).
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        out += 1
        out *= 0.5
        return out

    def backward(self, y, grad, mask=None):
        grad *= y * (1 - y)
        return grad


class Softmax(Activation):
    """Row-wise softmax ``exp(z_j) / sum_k exp(z_k)`` (the output of a classifier)."""

    name = "softmax"

    def forward(self, z, out=None):
        out = z if out is None else out
        np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def backward(self, y, grad, mask=None):
        # Jacobian-vector product: y * (g - sum(g * y)) per row.
        s = np.sum(grad * y, axis=1, keepdims=True)
        grad -= s
        grad *= y
        return grad


ACTIVATIONS: dict[str, Activation] = {
    a.name: a for a in (Linear(), ReLU(), LeakyReLU(), Tanh(), Sigmoid(), Softmax())
}
