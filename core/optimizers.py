"""Optimizers, keyed by the names the API accepts.

An optimizer updates a list of parameter arrays in place from their gradients
and keeps its per-parameter state (velocities, moments) by key, so the state
can be saved and restored exactly.

Plain SGD (with or without momentum) is linear in the gradient, so the
network folds the learning rate into the output delta (``scale``) and the
update here is a bare subtraction; Adam is not, so it gets raw gradients.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from . import _blas


class Optimizer(ABC):
    """Base class: updates parameter arrays in place and keeps per-parameter state by key.

    Parameters
    ----------
    **params
        The options of ``defaults`` (``learning_rate`` and the optimizer's own).

    Raises
    ------
    ValueError
        For an unknown option or a value out of range, naming it.
    """

    type = ""
    folds_learning_rate = False
    defaults: dict = {}

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults) - {"type"}
        if unknown:
            raise ValueError(
                f"optimizer.{sorted(unknown)[0]}: unknown option for {self.type!r}; "
                f"allowed: {', '.join(sorted(self.defaults))}")
        cfg = {**self.defaults, **{k: v for k, v in params.items() if k != "type"}}
        self.config = cfg
        self.learning_rate = _positive_float(cfg["learning_rate"], "optimizer.learning_rate")
        self.state: dict[str, np.ndarray] = {}
        self.t = 0

    @abstractmethod
    def step(self, keys: list[str], params: list[np.ndarray], grads: list[np.ndarray],
             weight_decay: float = 0.0) -> None:
        """Update every parameter in place from its gradient (one minibatch's step).

        Parameters
        ----------
        keys : list of str
            A stable name per parameter (``"0.W"``), under which state is kept.
        params : list of ndarray, float32 or float64, any shapes
            The parameters, updated in place.
        grads : list of ndarray, each the shape and dtype of its parameter
            ``dL/dparam`` (already times the learning rate when
            ``folds_learning_rate``); may be used as scratch space.
        weight_decay : float
            L2 coefficient: ``weight_decay * param`` is added to each gradient.
        """

    def steps_in_backward(self, weight_decay: float = 0.0) -> bool:
        """Whether the update is a bare ``p -= grad`` the layers may apply themselves.

        Then ``Network.backward(..., sgd_step=True)`` does the step during
        backpropagation and the caller calls ``count_step()`` instead of ``step()``.

        Parameters
        ----------
        weight_decay : float

        Returns
        -------
        bool
        """
        return False

    def count_step(self) -> None:
        """Count a step the layers applied themselves (see ``steps_in_backward``)."""
        self.t += 1

    # State round-trip: arrays by key plus JSON-able scalars.
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The per-parameter state (velocities, moments) by key.

        Returns
        -------
        dict of str to ndarray
            The arrays themselves, not copies.
        """
        return dict(self.state)

    def state_scalars(self) -> dict:
        """The JSON-able scalar state.

        Returns
        -------
        dict
            ``{"t": steps taken}``.
        """
        return {"t": self.t}

    def load_state(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        """Continue from ``state_arrays()`` and ``state_scalars()`` output (copied in).

        Parameters
        ----------
        arrays : dict of str to ndarray
        scalars : dict
        """
        self.state = {k: np.array(v) for k, v in arrays.items()}
        self.t = int(scalars.get("t", 0))


def _number(value, field: str) -> float:
    # Numbers only: float("0.1") and float(True) would otherwise pass.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{field} must be a number, got {value!r}")
    return float(value)


def _positive_float(value, field: str) -> float:
    v = _number(value, field)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{field} must be > 0, got {value!r}")
    return v


def _unit_float(value, field: str, *, open_low=False) -> float:
    v = _number(value, field)
    if not (0.0 <= v < 1.0) or (open_low and v == 0.0):
        raise ValueError(f"{field} must be in {'(0' if open_low else '[0'}, 1), got {value!r}")
    return v


class SGD(Optimizer):
    """Minibatch SGD with optional (Nesterov) momentum.

    ``v = momentum * v - lr * g``; ``w += v`` (or ``w += momentum * v - lr * g``
    with Nesterov). Gradients arrive already multiplied by the learning rate.
    """

    type = "sgd"
    folds_learning_rate = True
    defaults = {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}

    def __init__(self, **params):
        super().__init__(**params)
        self.momentum = _unit_float(self.config["momentum"], "optimizer.momentum")
        self.nesterov = bool(self.config["nesterov"])
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("optimizer.nesterov requires optimizer.momentum > 0, got momentum 0")

    def steps_in_backward(self, weight_decay=0.0):
        return self.momentum == 0.0 and not weight_decay

    def step(self, keys, params, grads, weight_decay=0.0):
        lr_wd = self.learning_rate * weight_decay
        mu = self.momentum
        for key, w, g in zip(keys, params, grads):
            # L2: d/dw (wd/2 |w|^2), learning rate folded in
            if lr_wd and not _blas.axpy(lr_wd, w, g):
                g += lr_wd * w
            if mu == 0.0:
                w -= g
                continue
            v = self.state.get(key)
            if v is None:
                v = self.state[key] = np.zeros_like(w)
            if not _blas.axpby(-1.0, g, mu, v):  # v = mu * v - g, one pass in BLAS
                v *= mu
                v -= g
            if self.nesterov:
                w += mu * v
                w -= g
            else:
                w += v
        self.t += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; L2 weight decay added to the gradient."""

    type = "adam"
    defaults = {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def __init__(self, **params):
        super().__init__(**params)
        self.beta1 = _unit_float(self.config["beta1"], "optimizer.beta1")
        self.beta2 = _unit_float(self.config["beta2"], "optimizer.beta2")
        self.eps = _positive_float(self.config["eps"], "optimizer.eps")

    def step(self, keys, params, grads, weight_decay=0.0):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = self.learning_rate * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        # The moment updates and the final step are one BLAS pass each where
        # core._blas has them (y = a x + b y); numpy needs two or three.
        for key, w, g in zip(keys, params, grads):
            if weight_decay and not _blas.axpy(weight_decay, w, g):
                g += weight_decay * w
            m = self.state.get(key + ".m")
            if m is None:
                m = self.state[key + ".m"] = np.zeros_like(w)
                self.state[key + ".v"] = np.zeros_like(w)
            v = self.state[key + ".v"]
            if not _blas.axpby(1 - b1, g, b1, m):  # m = b1 m + (1 - b1) g
                m *= b1
                m += (1 - b1) * g
            g *= g
            if not _blas.axpby(1 - b2, g, b2, v):  # v = b2 v + (1 - b2) g^2
                v *= b2
                g *= 1 - b2
                v += g
            # w -= step * m / (sqrt(v) + eps), using g as scratch space.
            np.sqrt(v, out=g)
            g += self.eps
            np.divide(m, g, out=g)
            if not _blas.axpy(-step, g, w):
                g *= step
                w -= g


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(spec: dict | None) -> Optimizer:
    """Build an optimizer from ``{"type": ..., **options}``.

    Parameters
    ----------
    spec : dict or None
        ``{"type": "sgd" | "adam", **options}``; None: plain SGD, learning rate 0.01.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        For an unknown type or option, or a value out of range, naming it.
    """
    spec = dict(spec or {"type": "sgd"})
    kind = spec.get("type", "sgd")
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer.type must be one of {', '.join(OPTIMIZERS)}, got {kind!r}")
    return OPTIMIZERS[kind](**spec)
