"""Weight initialisers, keyed by the names the API accepts.

Each is called as ``init(rng, fan_in, fan_out)``: ``rng`` a
``numpy.random.Generator``, ``fan_in`` and ``fan_out`` (int) the layer's
numbers of inputs and outputs. Each returns the weight matrix, an ndarray of
shape (fan_in, fan_out), float64.
"""
from __future__ import annotations

import numpy as np


def he(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Normal with std sqrt(2 / fan_in); suits relu and leaky relu."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Uniform in +-sqrt(6 / (fan_in + fan_out)); suits tanh, sigmoid, softmax."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Normal with std 0.01."""
    return rng.standard_normal((fan_in, fan_out)) * 0.01


INITS = {"he": he, "glorot": glorot, "normal": normal}


def default_init(activation: str) -> str:
    """He for the relu family, Glorot otherwise.

    Parameters
    ----------
    activation : str
        A key of ``ACTIVATIONS``.

    Returns
    -------
    str
        A key of ``INITS``.
    """
    return "he" if activation in ("relu", "leaky_relu") else "glorot"
