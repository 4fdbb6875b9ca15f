"""Layers: each has ``forward(x, training)``, ``backward(grad) -> grad_input``
and dicts ``params`` / ``grads`` keyed by parameter name.

Training-time buffers are allocated once per batch shape and reused, so the
hot loop does no large allocations. ``forward(..., training=False)`` uses
fresh arrays and caches nothing, so prediction never disturbs training state.

A layer type is one class registered in ``LAYERS`` under the ``type`` string
the API accepts: besides the array work it declares its spec fields and
validates them (``normalize``), builds itself from a spec (``from_spec``) and
counts its parameters (``spec_n_params``), so ``core.network`` needs no change
when a type is added.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from . import _blas
from ._spec import choice, int_field, positive_number
from .activations import ACTIVATIONS
from .initializers import INITS, default_init


class Layer(ABC):
    """Base class: a layer without parameters passes shapes through.

    Class attributes describe the layer's spec (one dict of ``layers`` in a
    network spec): ``type``, its ``fields`` besides ``type``, the field naming
    its activation (``activation_field``, used to find the output activation
    and to keep softmax last), the field fixing its output width
    (``units_field``) and whether it may be the network's last layer.
    """

    type = ""
    fields: tuple[str, ...] = ()
    activation_field: str | None = None
    units_field: str | None = None
    may_be_last = True

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        # Arrays learned in training but not by gradients (batch norm's running
        # statistics): saved with the model and in checkpoints.
        self.state: dict[str, np.ndarray] = {}
        self.input_dim: int | None = None
        self.output_dim: int | None = None
        self.dtype = np.float32
        self._bufs: dict[tuple, np.ndarray] = {}

    # -- the spec -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def normalize(cls, cfg: dict, where: str) -> dict:
        """Validate one layer's spec and return it with defaults filled in.

        Parameters
        ----------
        cfg : dict
            The layer's spec, ``{"type": cls.type, ...}``; it holds no fields
            other than ``fields`` (``normalize_spec`` checked that).
        where : str
            Its place for error messages, e.g. ``"layers[2]"``.

        Returns
        -------
        dict
            ``{"type": ..., **one entry per field}``.

        Raises
        ------
        ValueError
            Naming the field and the value (``layers[0].units must be >= 1, got 0``).
        """

    @classmethod
    def from_spec(cls, cfg: dict) -> "Layer":
        """Build the (unbuilt) layer from ``cfg``, a spec that ``normalize`` returned.

        Returns
        -------
        Layer
        """
        return cls(**{field: cfg.get(field) for field in cls.fields})

    @classmethod
    def spec_units(cls, cfg: dict) -> int | None:
        """Output width ``cfg`` (a normalised spec) fixes, or None when the layer keeps its input's width.

        Returns
        -------
        int or None
        """
        return cfg[cls.units_field] if cls.units_field else None

    @classmethod
    def spec_n_params(cls, cfg: dict, input_dim: int) -> int:
        """Number of trainable parameters for ``input_dim`` inputs (0 here).

        Parameters
        ----------
        cfg : dict
            A normalised layer spec.
        input_dim : int
            Width of the layer's input.

        Returns
        -------
        int
        """
        return 0

    # -- the arrays ---------------------------------------------------------------
    def build(self, input_dim: int, rng: np.random.Generator, dtype=np.float32) -> int:
        """Allocate parameters for ``input_dim`` inputs.

        Parameters
        ----------
        input_dim : int
            Width of the layer's input.
        rng : numpy.random.Generator
            Source of the initial weights.
        dtype : numpy dtype
            float32 or float64, for parameters and buffers.

        Returns
        -------
        int
            The output width.
        """
        self.input_dim = self.output_dim = input_dim
        self.dtype = np.dtype(dtype)
        return input_dim

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, shape)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = np.empty(shape, dtype=self.dtype)
        return buf

    @abstractmethod
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The layer's output for a batch.

        Parameters
        ----------
        x : ndarray of shape (n_samples, input_dim), the layer's dtype
            The batch; not modified.
        training : bool
            True inside ``fit``: the result may be a reused buffer, and what
            ``backward`` needs is cached. False: a fresh array, nothing cached.

        Returns
        -------
        ndarray of shape (n_samples, output_dim), the layer's dtype
        """

    @abstractmethod
    def backward(self, grad: np.ndarray, need_input_grad: bool = True,
                 sgd_step: bool = False) -> np.ndarray | None:
        """Turn ``dL/d output`` into ``dL/d input`` and fill ``grads``.

        Called after ``forward(x, training=True)`` on the same batch.

        Parameters
        ----------
        grad : ndarray of shape (n_samples, output_dim), the layer's dtype
            ``dL/d output``; may be overwritten.
        need_input_grad : bool
            False for the first layer, which may then skip computing it.
        sgd_step : bool
            Apply a plain SGD step itself, ``p -= grads[p]`` (the learning rate
            is already folded into ``grad``), instead of storing the gradients;
            ``grads`` is then left stale.

        Returns
        -------
        ndarray of shape (n_samples, input_dim), or None
            ``dL/d input`` (possibly a reused buffer or ``grad`` itself); None
            when ``need_input_grad`` is False and the layer skipped it.
        """

    def constrain(self) -> None:
        """Apply the layer's weight constraint after an optimizer step (none here)."""

    @property
    def constrained(self) -> bool:
        """Whether ``constrain`` does anything (``fit`` calls it only then).

        Returns
        -------
        bool
        """
        return False

    @abstractmethod
    def spec(self) -> dict:
        """The layer's spec, as ``normalize`` returns it.

        Returns
        -------
        dict
        """


class Dense(Layer):
    """Fully connected layer ``y = f(x @ W + b)``.

    Parameters
    ----------
    units : int
        Output width.
    activation : str
        A key of ``ACTIVATIONS``.
    init : str or None
        A key of ``INITS``; default He for relu-like activations, else Glorot.
    max_norm : float or None
        After every optimizer step, rescale each unit's incoming weights (a column
        of ``W``) whose L2 norm exceeds this to exactly this norm (Keras' ``MaxNorm``
        kernel constraint; the bias is left alone).

    With ``skip_activation`` set (by the network, when the loss applies the
    output activation itself), ``forward`` returns the logits ``x @ W + b``.
    """

    type = "dense"
    fields = ("units", "activation", "init", "max_norm")
    activation_field = "activation"
    units_field = "units"

    def __init__(self, units: int, activation: str = "linear", init: str | None = None,
                 max_norm: float | None = None):
        super().__init__()
        self.units = units
        self.max_norm = max_norm
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]
        self.init = init or default_init(activation)
        self.skip_activation = False
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None

    @classmethod
    def normalize(cls, cfg, where):
        units = int_field(cfg.get("units"), f"{where}.units")
        act = choice(cfg.get("activation") or "linear", f"{where}.activation", ACTIVATIONS)
        init = cfg.get("init")
        if init is not None:
            choice(init, f"{where}.init", INITS)
        out = {"type": "dense", "units": units, "activation": act, "init": init}
        max_norm = cfg.get("max_norm")
        if max_norm is not None:
            out["max_norm"] = positive_number(max_norm, f"{where}.max_norm")
        return out

    @classmethod
    def spec_n_params(cls, cfg, input_dim):
        return input_dim * cfg["units"] + cfg["units"]

    def build(self, input_dim, rng, dtype=np.float32):
        self.input_dim, self.output_dim = input_dim, self.units
        self.dtype = np.dtype(dtype)
        W = INITS[self.init](rng, input_dim, self.units).astype(self.dtype)
        self.params = {"W": W, "b": np.zeros(self.units, dtype=self.dtype)}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros(self.units, dtype=self.dtype)}
        self._bufs = {}
        return self.units

    def affine(self, x: np.ndarray) -> np.ndarray:
        """Inference pre-activation ``x @ W + b`` as a fresh array.

        The bias is added as a (1, units) view: for a one-row ``x`` the shapes
        then match exactly and numpy skips broadcasting (~1 us less per call).

        Parameters
        ----------
        x : ndarray of shape (n_samples, input_dim), the layer's dtype

        Returns
        -------
        ndarray of shape (n_samples, units), the layer's dtype
        """
        z = np.dot(x, self.params["W"])
        z += self.params["b"].reshape(1, -1)
        return z

    def activate(self, z: np.ndarray) -> np.ndarray:
        """The activation applied in place (none when the loss applies it).

        Parameters
        ----------
        z : ndarray of shape (n_samples, units)
            Pre-activations, overwritten.

        Returns
        -------
        ndarray of shape (n_samples, units)
            ``z`` itself.
        """
        return z if self.skip_activation else self.activation.forward(z)

    def forward(self, x, training=False):
        if not training:
            return self.activate(self.affine(x))
        W, b = self.params["W"], self.params["b"]
        z = self._buffer("z", (x.shape[0], self.units))
        np.dot(x, W, out=z)
        z += b
        self.activate(z)
        self._x, self._y = x, z
        return z

    def backward(self, grad, need_input_grad=True, sgd_step=False):
        # grad is dL/dy for this layer's output buffer; it may be modified in place.
        n = grad.shape[0]
        if not self.skip_activation:
            mask = self._bufs.get(("mask", grad.shape))
            if mask is None:
                mask = self._bufs[("mask", grad.shape)] = np.empty(grad.shape, dtype=bool)
            grad = self.activation.backward(self._y, grad, mask)
        W, b, gW, gb = self.params["W"], self.params["b"], self.grads["W"], self.grads["b"]
        gin = None
        if need_input_grad:  # before any step below changes W
            gin = self._buffer("gin", (grad.shape[0], self.input_dim))
            np.dot(grad, W.T, out=gin)
        # The bias gradient is the column sum, done as a BLAS gemv with ones.
        np.dot(self._ones(n), grad, out=gb)
        if not sgd_step:
            np.dot(self._x.T, grad, out=gW)
            return gin
        b -= gb
        # W -= x.T @ grad in one accumulating GEMM where the BLAS allows it.
        if not _blas.gemm_tn_acc(self._x, grad, W, -1.0):
            np.dot(self._x.T, grad, out=gW)
            W -= gW
        return gin

    def _ones(self, n: int) -> np.ndarray:
        ones = self._bufs.get(("ones", n))
        if ones is None:
            ones = self._bufs[("ones", n)] = np.ones(n, dtype=self.dtype)
        return ones

    @property
    def constrained(self):
        return self.max_norm is not None

    def constrain(self):
        if self.max_norm is None:
            return
        W = self.params["W"]
        norms = np.sqrt(np.einsum("ij,ij->j", W, W))
        over = norms > self.max_norm
        if over.any():
            W[:, over] *= (self.max_norm / norms[over]).astype(W.dtype)

    def spec(self):
        out = {"type": "dense", "units": self.units, "activation": self.activation_name,
               "init": self.init}
        if self.max_norm is not None:
            out["max_norm"] = self.max_norm
        return out


class ActivationLayer(Layer):
    """A stand-alone activation ``y = f(x)``."""

    type = "activation"
    fields = ("name",)
    activation_field = "name"

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.activation = ACTIVATIONS[name]
        self.skip_activation = False
        self._y: np.ndarray | None = None

    @classmethod
    def normalize(cls, cfg, where):
        return {"type": "activation", "name": choice(cfg.get("name"), f"{where}.name", ACTIVATIONS)}

    def forward(self, x, training=False):
        if self.skip_activation:
            return x
        if not training:
            return self.activation.forward(x, out=np.empty_like(x))
        y = self._buffer("y", x.shape)
        self.activation.forward(x, out=y)
        self._y = y
        return y

    def backward(self, grad, need_input_grad=True, sgd_step=False):
        if self.skip_activation:
            return grad
        return self.activation.backward(self._y, grad)

    def spec(self):
        return {"type": "activation", "name": self.name}


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate``
    and scale the rest by ``1 / (1 - rate)``; at prediction, the identity.

    The random mask comes from ``self.rng``, which ``fit`` sets to its seeded
    training generator so runs are reproducible.
    """

    type = "dropout"
    fields = ("rate",)
    may_be_last = False

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)
        self.rng: np.random.Generator = np.random.default_rng(0)
        self._mask: np.ndarray | None = None

    @classmethod
    def normalize(cls, cfg, where):
        rate = cfg.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0.0 <= rate < 1.0):
            raise ValueError(f"{where}.rate must be a number in [0, 1), got {rate!r}")
        return {"type": "dropout", "rate": float(rate)}

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        mask = self._buffer("mask", x.shape)
        self.rng.random(out=mask, dtype=mask.dtype)
        keep = 1.0 - self.rate
        # mask := (u >= rate) / keep, computed in place.
        np.greater_equal(mask, self.rate, out=mask, casting="unsafe")
        mask *= 1.0 / keep
        self._mask = mask
        y = self._buffer("y", x.shape)
        np.multiply(x, mask, out=y)
        return y

    def backward(self, grad, need_input_grad=True, sgd_step=False):
        if self._mask is not None:
            grad *= self._mask
        return grad

    def spec(self):
        return {"type": "dropout", "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy) over the features of its input.

    In training each feature is normalised with the batch's mean and (biased)
    variance, ``y = gamma (x - mean) / sqrt(var + eps) + beta``, and the running
    statistics move towards the batch's: ``running = (1 - momentum) running +
    momentum batch`` (PyTorch's convention; the running variance takes the
    unbiased batch variance). At inference the running statistics are used.

    Parameters
    ----------
    momentum : float in (0, 1]
        Weight of each batch in the running statistics (default 0.1).
    eps : float > 0
        Added to the variance (default 1e-5).
    """

    type = "batch_norm"
    fields = ("momentum", "eps")
    may_be_last = False

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)
        self._xhat: np.ndarray | None = None
        self._inv_std: np.ndarray | None = None

    @classmethod
    def normalize(cls, cfg, where):
        momentum = cfg.get("momentum")
        momentum = 0.1 if momentum is None else positive_number(momentum, f"{where}.momentum")
        if momentum > 1:
            raise ValueError(f"{where}.momentum must be in (0, 1], got {cfg.get('momentum')!r}")
        eps = cfg.get("eps")
        eps = 1e-5 if eps is None else positive_number(eps, f"{where}.eps")
        return {"type": "batch_norm", "momentum": momentum, "eps": eps}

    @classmethod
    def spec_n_params(cls, cfg, input_dim):
        return 2 * input_dim

    def build(self, input_dim, rng, dtype=np.float32):
        super().build(input_dim, rng, dtype)
        d, dt = input_dim, self.dtype
        self.params = {"gamma": np.ones(d, dtype=dt), "beta": np.zeros(d, dtype=dt)}
        self.grads = {"gamma": np.zeros(d, dtype=dt), "beta": np.zeros(d, dtype=dt)}
        self.state = {"running_mean": np.zeros(d, dtype=dt), "running_var": np.ones(d, dtype=dt)}
        self._bufs = {}
        return d

    def forward(self, x, training=False):
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            scale = gamma / np.sqrt(self.state["running_var"] + self.eps)
            y = x - self.state["running_mean"]
            y *= scale
            y += beta
            return y
        n = x.shape[0]
        mean = x.mean(axis=0)
        xhat = self._buffer("xhat", x.shape)
        np.subtract(x, mean, out=xhat)
        var = np.einsum("ij,ij->j", xhat, xhat) / n
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= inv_std
        self._xhat, self._inv_std = xhat, inv_std.astype(self.dtype)
        m = self.momentum
        unbiased = var * (n / (n - 1)) if n > 1 else var
        self.state["running_mean"] *= 1 - m
        self.state["running_mean"] += m * mean
        self.state["running_var"] *= 1 - m
        self.state["running_var"] += (m * unbiased).astype(self.dtype)
        y = self._buffer("y", x.shape)
        np.multiply(xhat, gamma, out=y)
        y += beta
        return y

    def backward(self, grad, need_input_grad=True, sgd_step=False):
        xhat, gamma = self._xhat, self.params["gamma"]
        n = grad.shape[0]
        gg, gb = self.grads["gamma"], self.grads["beta"]
        np.einsum("ij,ij->j", grad, xhat, out=gg)
        np.sum(grad, axis=0, out=gb)
        gin = None
        if need_input_grad:
            # dx = gamma / (n std) (n g - sum(g) - xhat sum(g xhat))
            gin = self._buffer("gin", grad.shape)
            np.multiply(xhat, gg, out=gin)
            gin += gb
            gin *= -1.0 / n
            gin += grad
            gin *= gamma * self._inv_std
        if sgd_step:
            gamma -= gg
            self.params["beta"] -= gb
        return gin

    def spec(self):
        return {"type": "batch_norm", "momentum": self.momentum, "eps": self.eps}


# Every layer type, keyed by the ``type`` string the API accepts (in this order in messages).
LAYERS: dict[str, type[Layer]] = {cls.type: cls for cls in (Dense, ActivationLayer, Dropout, BatchNorm)}
