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
import operator
from abc import ABC, abstractmethod

import numpy as np

from . import _blas


class GradPack:
    """Gradient buffers that are views of one flat array, so an optimizer can update all parameters' state with a
    few whole-array calls instead of a few calls per parameter (what costs most on small networks).

    Each view starts on a 64-byte boundary of ``flat``; the gaps between them hold zeros, which every update keeps
    at zero. Built by ``Network.pack_grads``; ``Optimizer.use_pack`` hands it to an optimizer.

    Parameters
    ----------
    shapes : list of tuple of int
        The gradients' shapes, in the order of ``Network.param_items``.
    dtype : numpy dtype
    """

    ALIGN_BYTES = 64

    def __init__(self, shapes: list[tuple[int, ...]], dtype):
        dtype = np.dtype(dtype)
        step = max(1, self.ALIGN_BYTES // dtype.itemsize)
        self.offsets, end = [], 0
        for shape in shapes:
            self.offsets.append(end)
            end += -(-math.prod(shape) // step) * step
        self.shapes = [tuple(s) for s in shapes]
        self.flat = self.zeros(end, dtype)
        self.views = self.views_of(self.flat)

    @classmethod
    def zeros(cls, n: int, dtype) -> np.ndarray:
        """A zeroed 1-D array of ``n`` elements whose data starts on a 64-byte boundary."""
        dtype = np.dtype(dtype)
        raw = np.zeros(n * dtype.itemsize + cls.ALIGN_BYTES, dtype=np.uint8)
        start = -raw.ctypes.data % cls.ALIGN_BYTES
        return raw[start:start + n * dtype.itemsize].view(dtype)

    def views_of(self, flat: np.ndarray) -> list[np.ndarray]:
        """Per-parameter views of ``flat`` (this pack's layout)."""
        return [flat[o:o + math.prod(s)].reshape(s) for o, s in zip(self.offsets, self.shapes)]

    def holds(self, grads: list[np.ndarray]) -> bool:
        """Whether ``grads`` are exactly this pack's views, in order."""
        views = self.views
        return len(grads) == len(views) and all(map(operator.is_, grads, views))


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
        self._pack: GradPack | None = None
        self._flat: dict[str, tuple[np.ndarray, list[np.ndarray], GradPack, dict]] = {}
        self._axpy: tuple[tuple, object] | None = None

    @abstractmethod
    def step(self, keys: list[str], params: list[np.ndarray], grads: list[np.ndarray],
             weight_decay: float = 0.0, l1: float = 0.0) -> None:
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
        l1 : float
            L1 coefficient: ``l1 * sign(param)`` is added to each gradient.
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

    def use_pack(self, pack: GradPack | None) -> None:
        """Take whole-array steps when ``step`` gets ``pack``'s views as its gradients (else per parameter).

        Parameters
        ----------
        pack : GradPack or None
        """
        self._pack = pack

    def _packed(self, grads: list[np.ndarray]) -> GradPack | None:
        pack = self._pack
        return pack if pack is not None and pack.holds(grads) else None

    def _flat_slot(self, suffix: str, keys: list[str], pack: GradPack) -> np.ndarray:
        """The state arrays ``key + suffix`` as views of one flat array laid out like ``pack`` (returned), zeros
        on first use; arrays already in ``state`` (a loaded state) are copied in. Only ``load_state`` (a new
        ``state`` dict) and this method put arrays into ``state`` once a pack is in use."""
        entry = self._flat.get(suffix)
        if entry is None or entry[2] is not pack or entry[3] is not self.state:
            flat = GradPack.zeros(pack.flat.size, pack.flat.dtype)
            views = pack.views_of(flat)
            for key, view in zip(keys, views):
                old = self.state.get(key + suffix)
                if old is not None:
                    view[...] = old
                self.state[key + suffix] = view
            self._flat[suffix] = entry = (flat, views, pack, self.state)
        return entry[0]

    def _step_all(self, alpha: float, xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
        """``y += alpha * x`` for every pair, each array on its own (as `_blas.axpy`; without it numpy, with ``x``
        as scratch space)."""
        ids = tuple(map(id, xs)) + tuple(map(id, ys))
        if self._axpy is None or self._axpy[0] != ids:
            self._axpy = (ids, _blas.AxpyPairs(xs, ys))
        if not self._axpy[1](alpha):
            for x, y in zip(xs, ys):
                if not _blas.axpy(alpha, x, y):
                    x *= -alpha
                    y -= x

    def _slot(self, key: str, like: np.ndarray) -> np.ndarray:
        """The state array under ``key``, zeros like ``like`` on first use."""
        arr = self.state.get(key)
        if arr is None:
            arr = self.state[key] = np.zeros_like(like)
        return arr

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

    def step(self, keys, params, grads, weight_decay=0.0, l1=0.0):
        lr_wd, lr_l1 = self.learning_rate * weight_decay, self.learning_rate * l1
        mu = self.momentum
        for key, w, g in zip(keys, params, grads):
            add_penalties(w, g, lr_wd, lr_l1)  # learning rate folded in
            if mu == 0.0:
                w -= g
                continue
            v = self._slot(key, w)
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
    decoupled_decay = 0.0

    def __init__(self, **params):
        super().__init__(**params)
        self.beta1 = _unit_float(self.config["beta1"], "optimizer.beta1")
        self.beta2 = _unit_float(self.config["beta2"], "optimizer.beta2")
        self.eps = _positive_float(self.config["eps"], "optimizer.eps")
        self._bound_moments: tuple | None = None  # see _bound

    def step(self, keys, params, grads, weight_decay=0.0, l1=0.0):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = self.learning_rate * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        decay = 1.0 - self.learning_rate * self.decoupled_decay
        pack = self._packed(grads)
        if pack is not None:
            self._step_packed(keys, params, grads, pack, step, decay, weight_decay, l1)
            return
        # The moment updates and the final step are one BLAS pass each where
        # core._blas has them (y = a x + b y); numpy needs two or three.
        for key, w, g in zip(keys, params, grads):
            add_penalties(w, g, weight_decay, l1)
            if decay != 1.0:  # AdamW: w *= 1 - lr * wd, before the Adam step (as PyTorch)
                w *= decay
            m, v = self._slot(key + ".m", w), self._slot(key + ".v", w)
            if not _blas.axpby(1 - b1, g, b1, m):  # m = b1 m + (1 - b1) g
                m *= b1
                m += (1 - b1) * g
            # w -= step * m / (sqrt(v) + eps), using g as scratch space.
            g *= g
            rms_denominator(v, g, b2, self.eps)
            np.divide(m, g, out=g)
            if not _blas.axpy(-step, g, w):
                g *= step
                w -= g

    def _step_packed(self, keys, params, grads, pack: GradPack, step: float, decay: float,
                     weight_decay: float, l1: float) -> None:
        """The same step with the moments and the scratch work on whole flat arrays: every element goes through the
        same operations as in the loop above (elementwise, and `_blas.axpby` gives each element the same result
        wherever it sits in a vector), so the weights are bitwise those of the loop. The final step stays one
        BLAS ``axpy`` per parameter: its kernel rounds a vector's last few elements differently from the rest."""
        b1, b2 = self.beta1, self.beta2
        if weight_decay or l1 or decay != 1.0:
            for w, g in zip(params, grads):
                add_penalties(w, g, weight_decay, l1)
                if decay != 1.0:
                    w *= decay
        g = pack.flat
        m, v = self._flat_slot(".m", keys, pack), self._flat_slot(".v", keys, pack)
        update_m, update_v = self._bound(g, m, v)
        if not update_m(1 - b1, b1):  # m = b1 m + (1 - b1) g
            m *= b1
            m += (1 - b1) * g
        g *= g
        if not update_v(1 - b2, b2):  # as rms_denominator: v = b2 v + (1 - b2) g^2; g := sqrt(v) + eps
            v *= b2
            g *= 1 - b2
            v += g
        np.sqrt(v, out=g)
        g += self.eps
        np.divide(m, g, out=g)
        self._step_all(-step, grads, params)

    def _bound(self, g: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple:
        """The two moment updates as `_blas.Axpby` calls on these flat arrays (made once per set of arrays)."""
        bound = self._bound_moments
        if bound is None or bound[0] is not g or bound[1] is not m or bound[2] is not v:
            bound = self._bound_moments = (g, m, v, _blas.Axpby(g, m), _blas.Axpby(g, v))
        return bound[3], bound[4]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step first shrinks
    every parameter by ``1 - learning_rate * weight_decay`` (PyTorch's ``AdamW``, whose
    default ``weight_decay`` 0.01 this keeps); the job's L2 ``weight_decay`` still adds
    to the gradient."""

    type = "adamw"
    defaults = {**Adam.defaults, "weight_decay": 0.01}

    def __init__(self, **params):
        super().__init__(**params)
        wd = _number(self.config["weight_decay"], "optimizer.weight_decay")
        if not math.isfinite(wd) or wd < 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0, got {self.config['weight_decay']!r}")
        self.decoupled_decay = wd


class RMSprop(Optimizer):
    """RMSprop (Hinton): ``v = rho v + (1 - rho) g^2``; ``w -= lr g / (sqrt(v) + eps)``,
    with optional momentum on that step (PyTorch's ``RMSprop``, Keras' defaults)."""

    type = "rmsprop"
    defaults = {"learning_rate": 0.001, "rho": 0.9, "eps": 1e-7, "momentum": 0.0}

    def __init__(self, **params):
        super().__init__(**params)
        self.rho = _unit_float(self.config["rho"], "optimizer.rho")
        self.eps = _positive_float(self.config["eps"], "optimizer.eps")
        self.momentum = _unit_float(self.config["momentum"], "optimizer.momentum")
        self._bufs: dict[str, np.ndarray] = {}

    def step(self, keys, params, grads, weight_decay=0.0, l1=0.0):
        self.t += 1
        rho, lr, mu = self.rho, self.learning_rate, self.momentum
        for key, w, g in zip(keys, params, grads):
            add_penalties(w, g, weight_decay, l1)
            v = self._slot(key + ".v", w)
            sq = self._scratch(key, w)
            np.multiply(g, g, out=sq)
            rms_denominator(v, sq, rho, self.eps)
            np.divide(g, sq, out=g)  # g := g / (sqrt(v) + eps)
            if mu:
                buf = self._slot(key + ".m", w)
                buf *= mu
                buf += g
                g = buf
            if not _blas.axpy(-lr, g, w):
                w -= lr * g

    def _scratch(self, key: str, w: np.ndarray) -> np.ndarray:
        buf = self._bufs.get(key)
        if buf is None or buf.shape != w.shape or buf.dtype != w.dtype:
            buf = self._bufs[key] = np.empty_like(w)
        return buf


def add_penalties(w: np.ndarray, g: np.ndarray, weight_decay: float, l1: float) -> None:
    """Add the L2 and L1 penalties' gradients, ``weight_decay * w + l1 * sign(w)``, to ``g`` in place.

    Parameters
    ----------
    w : ndarray, any shape
        The parameter.
    g : ndarray, the shape and dtype of ``w``
        Its gradient, updated in place.
    weight_decay, l1 : float
        The coefficients (0: that penalty is off).
    """
    if weight_decay and not _blas.axpy(weight_decay, w, g):
        g += weight_decay * w
    if l1:  # the L1 (sub)gradient
        s = np.sign(w)
        s *= l1
        g += s


def rms_denominator(v: np.ndarray, sq: np.ndarray, rho: float, eps: float) -> None:
    """Average the squared gradient into ``v`` and leave ``sqrt(v) + eps`` in ``sq`` (Adam, RMSprop).

    ``v = rho * v + (1 - rho) * sq``, in one BLAS pass where ``core._blas`` has it.

    Parameters
    ----------
    v : ndarray, any shape
        The running average of squared gradients, updated in place.
    sq : ndarray, the shape and dtype of ``v``
        The squared gradient on entry; ``sqrt(v) + eps`` on return.
    rho : float
        The average's decay (Adam's ``beta2``).
    eps : float
        Added to the root for numerical stability.
    """
    if not _blas.axpby(1 - rho, sq, rho, v):
        v *= rho
        sq *= 1 - rho
        v += sq
    np.sqrt(v, out=sq)
    sq += eps


def clip_by_global_norm(grads: list[np.ndarray], clip_norm: float) -> float:
    """Scale every gradient by ``clip_norm / norm`` when their global L2 norm exceeds ``clip_norm``.

    Parameters
    ----------
    grads : list of ndarray, any shapes
        Updated in place.
    clip_norm : float
        The largest global norm let through (> 0), in the units of ``grads``.

    Returns
    -------
    float
        The global norm before clipping.
    """
    total = 0.0
    for g in grads:
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    norm = math.sqrt(total)
    if norm > clip_norm:
        factor = clip_norm / norm
        for g in grads:
            g *= factor
    return norm


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def make_optimizer(spec: dict | None) -> Optimizer:
    """Build an optimizer from ``{"type": ..., **options}``.

    Parameters
    ----------
    spec : dict or None
        ``{"type": <a key of OPTIMIZERS>, **options}``; None: plain SGD, learning rate 0.01.

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
