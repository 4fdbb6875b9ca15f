"""The network: a spec-validated list of layers run forward, then backward."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ._spec import choice, int_field
from .activations import ACTIVATIONS
from .layers import LAYERS, Dense, Layer
from .losses import LOSSES
from .optimizers import GradPack
from .preprocessing import Preprocessor

FORMAT_VERSION = 1
_SPEC_FIELDS = {"name", "input_dim", "layers", "loss", "huber_delta"}


def normalize_spec(spec: dict) -> dict:
    """Validate a network spec and return it with defaults filled in.

    Parameters
    ----------
    spec : dict
        ``{"layers": [...], "loss": ..., "input_dim"?: int, "name"?: str}``,
        the body of ``POST /v1/networks``.

    Returns
    -------
    dict
        The same keys, each layer as its class's ``normalize`` returns it.

    Raises
    ------
    ValueError
        Naming the field and the value (``layers[0].units must be >= 1, got 0``).
    """
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be an object, got {type(spec).__name__}")
    unknown = set(spec) - _SPEC_FIELDS
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown field; allowed: {', '.join(sorted(_SPEC_FIELDS))}")
    layers = _normalize_layers(spec.get("layers"))
    loss_name = choice(spec.get("loss"), "loss", LOSSES)
    LOSSES[loss_name].check_output(output_units(layers), output_activation(layers))
    out = {"layers": layers, "loss": loss_name}
    if spec.get("name") is not None:
        out["name"] = str(spec["name"])
    if spec.get("input_dim") is not None:
        out["input_dim"] = int_field(spec["input_dim"], "input_dim")
    if spec.get("huber_delta") is not None:
        if loss_name != "huber":
            raise ValueError(f"huber_delta is only used with loss 'huber', not {loss_name!r}")
        out["huber_delta"] = LOSSES["huber"].with_delta(spec["huber_delta"]).delta
    return out


def _normalize_layers(layers) -> list[dict]:
    """Each layer through its class's ``normalize``, then the rules on their order."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers must be a non-empty list")
    out = []
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(layer, dict):
            raise ValueError(f"{where} must be an object, got {layer!r}")
        kind = choice(layer.get("type"), f"{where}.type", LAYERS)
        extra = {k for k, v in layer.items() if v is not None} - {"type", *LAYERS[kind].fields}
        if extra:
            raise ValueError(f"{where}.{sorted(extra)[0]}: unknown field for a {kind} layer")
        out.append(LAYERS[kind].normalize(layer, where))
    if not any(LAYERS[l["type"]].units_field for l in out):
        sizing = " or ".join(k for k, cls in LAYERS.items() if cls.units_field)
        raise ValueError(f"layers must contain at least one {sizing} layer")
    last = out[-1]["type"]
    if not LAYERS[last].may_be_last:
        raise ValueError(f"layers[{len(out) - 1}]: {last} cannot be the last layer")
    # The output activation is that of the last layer; softmax is allowed nowhere else.
    for i, l in enumerate(out[:-1]):
        field = LAYERS[l["type"]].activation_field
        if field and l[field] == "softmax":
            raise ValueError(f"layers[{i}].{field}: softmax is only allowed in the last layer")
    return out


def output_units(layers: list[dict]) -> int:
    """Width of the network's output: that of the last of ``layers`` (normalised specs) that fixes one.

    Returns
    -------
    int
    """
    return [units for units in (LAYERS[l["type"]].spec_units(l) for l in layers) if units][-1]


def output_activation(layers: list[dict]) -> str:
    """Name of the output activation of ``layers`` (normalised specs): ``"linear"`` when the last has none.

    Returns
    -------
    str
        A key of ``ACTIVATIONS``.
    """
    field = LAYERS[layers[-1]["type"]].activation_field
    return layers[-1][field] if field else "linear"


def count_params(spec: dict, input_dim: int | None = None) -> int | None:
    """Number of trainable parameters, or None when the input width is unknown.

    Parameters
    ----------
    spec : dict
        A network spec (validated here).
    input_dim : int or None
        Input width; default the spec's ``input_dim``.

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        When the spec is invalid (see ``normalize_spec``).
    """
    spec = normalize_spec(spec)
    d = input_dim if input_dim is not None else spec.get("input_dim")
    if d is None:
        return None
    total = 0
    for layer in spec["layers"]:
        cls = LAYERS[layer["type"]]
        total += cls.spec_n_params(layer, d)
        d = cls.spec_units(layer) or d
    return total


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz to a temporary name, flush, fsync and rename it into place.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    arrays : dict of str to ndarray
        Saved under their keys (numeric or string arrays; nothing is pickled).

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj))


def _from_json_array(arr: np.ndarray):
    return json.loads(str(arr[()]))


def _first_cell(mask: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first True in a 1-D or 2-D mask."""
    hit = np.argwhere(mask)[0]
    return int(hit[0]), int(hit[1]) if mask.ndim > 1 else 0


def _check_finite(X: np.ndarray, name: str, chunk: int = 8192, limit: float | None = None,
                  first_row: int = 0) -> None:
    """Raise naming the first non-finite cell (or, with ``limit``, the first
    cell whose magnitude would overflow the training dtype); rows are counted
    from ``first_row``, for a block of a larger array."""
    for s in range(0, X.shape[0], chunk):
        block = X[s:s + chunk]
        start = first_row + s
        ok = np.isfinite(block)
        if not ok.all():
            r, c = _first_cell(~ok)
            raise ValueError(f"{name} has a non-finite value at row {start + r}, column {c}")
        if limit is not None:
            big = np.abs(block) > limit
            if big.any():
                r, c = _first_cell(big)
                raise ValueError(f"{name} has a value too large for float32 at row {start + r}, "
                                 f"column {c}: {float(block.reshape(len(block), -1)[r, c]):g}; "
                                 "rescale the data")


class Network:
    """A multilayer perceptron built from a spec.

    Parameters
    ----------
    spec : dict
        ``{"layers": [...], "loss": ..., "input_dim"?: int, "name"?: str}``,
        the body of ``POST /v1/networks``.
    dtype : numpy dtype
        Computation dtype, float32 by default (float64 for gradient checks).
    seed : int or None
        When given with a known ``input_dim``, initialise the weights now;
        otherwise ``fit`` initialises them from its own seed.
    """

    def __init__(self, spec: dict, dtype=np.float32, seed: int | None = None):
        self.spec = normalize_spec(spec)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers: list[Layer] = [LAYERS[c["type"]].from_spec(c) for c in self.spec["layers"]]
        self.loss = LOSSES[self.spec["loss"]]
        if "huber_delta" in self.spec:
            self.loss = self.loss.with_delta(self.spec["huber_delta"])
        self.input_dim: int | None = self.spec.get("input_dim")
        self.output_dim: int = output_units(self.spec["layers"])
        self.task = self.loss.task
        self.meta: dict = {}
        # Preprocessing learned by fit (imputation, scaling, one-hot), applied by predict to raw rows.
        self.preprocessor: Preprocessor | None = None
        self.built = False
        self._grad_pack: GradPack | None = None  # see pack_grads
        # When the loss applies the output activation itself, the last layer
        # hands it logits during training and prediction; see _output().
        self.output_activation = ACTIVATIONS[output_activation(self.spec["layers"])]
        self._fused = self.loss.fused_activation is not None
        if self._fused:
            self.layers[-1].skip_activation = True
        if seed is not None and self.input_dim is not None:
            self.build(self.input_dim, np.random.default_rng(seed))

    @classmethod
    def from_spec(cls, spec: dict, dtype=np.float32, seed: int | None = None) -> "Network":
        """Validate ``spec`` and build the network.

        Parameters
        ----------
        spec : dict
            The body of ``POST /v1/networks`` (see the class docstring).
        dtype : numpy dtype
            float32 (default) or float64.
        seed : int or None
            Initialise the weights now (when the spec gives ``input_dim``).

        Returns
        -------
        Network

        Raises
        ------
        ValueError
            For an invalid spec or dtype, naming the field and the value.
        """
        return cls(spec, dtype=dtype, seed=seed)

    # -- structure --------------------------------------------------------
    def build(self, input_dim: int, rng: np.random.Generator, raw_input_dim: int | None = None) -> None:
        """Initialise all weights for ``input_dim`` input features.

        Parameters
        ----------
        input_dim : int
            Width of the (preprocessed) rows the first layer sees.
        rng : numpy.random.Generator
            Source of the initial weights.
        raw_input_dim : int or None
            The width before preprocessing (one-hot columns make ``input_dim``
            larger); the spec's ``input_dim`` may name either.

        Raises
        ------
        ValueError
            When neither width matches the spec's ``input_dim``.
        """
        if self.spec.get("input_dim") is not None and input_dim != self.spec["input_dim"] \
                and raw_input_dim != self.spec["input_dim"]:
            raise ValueError(f"input_dim: the network expects {self.spec['input_dim']} features, "
                             f"the data has {input_dim}")
        d = input_dim
        for layer in self.layers:
            d = layer.build(d, rng, self.dtype)
        self.input_dim = input_dim
        self.built = True

    @property
    def n_features_in(self) -> int | None:
        """Values per raw input row (before preprocessing); None before ``build``.

        Returns
        -------
        int or None
        """
        return self.preprocessor.n_features_in if self.preprocessor is not None else self.input_dim

    @property
    def n_params(self) -> int | None:
        """Number of trainable parameters; None while the input width is unknown.

        Returns
        -------
        int or None
        """
        return count_params(self.spec, self.input_dim)

    def param_items(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(key, param, grad)`` for every trainable array, in a fixed order.

        Returns
        -------
        list of (str, ndarray, ndarray)
            Key ``"<layer index>.<name>"``, the parameter and its gradient
            buffer (same shape and dtype), the arrays themselves.
        """
        out = []
        for i, layer in enumerate(self.layers):
            for name, p in layer.params.items():
                out.append((f"{i}.{name}", p, layer.grads[name]))
        return out

    def pack_grads(self) -> GradPack:
        """Make every layer's gradient buffers views of one flat array (see ``GradPack``), once.

        Layers write their gradients into these buffers (``out=``), so after ``backward`` an
        optimizer given the pack (``Optimizer.use_pack``) can update all parameters at once.

        Returns
        -------
        GradPack
            The same pack on later calls, unless a layer's buffers were replaced (a rebuild).
        """
        grads = [g for _, _, g in self.param_items()]
        pack = self._grad_pack
        if pack is not None and pack.holds(grads):
            return pack
        pack = self._grad_pack = GradPack([g.shape for g in grads], self.dtype)
        views = iter(pack.views)
        for layer in self.layers:
            for name, g in layer.grads.items():
                view = next(views)
                view[...] = g
                layer.grads[name] = view
        return pack

    def get_arrays(self) -> dict[str, np.ndarray]:
        """All arrays that define the trained network (weights and preprocessing state).

        Returns
        -------
        dict of str to ndarray
            ``param/<key>``, ``state/<key>`` (running statistics; the arrays
            themselves, not copies) and ``prep/...``.
        """
        arrays = {f"param/{k}": p for k, p, _ in self.param_items()}
        for i, layer in enumerate(self.layers):
            arrays.update({f"state/{i}.{name}": a for name, a in layer.state.items()})
        if self.preprocessor is not None:
            arrays.update(self.preprocessor.to_arrays("prep/"))
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays from ``get_arrays()`` output into this (built) network.

        Parameters
        ----------
        arrays : dict of str to ndarray
            As ``get_arrays`` returns them (or format-1 ``x_mean``/``x_scale``).

        Raises
        ------
        ValueError
            When a parameter's shape does not match.
        KeyError
            When a parameter is missing.
        """
        for k, p, _ in self.param_items():
            src = arrays[f"param/{k}"]
            if src.shape != p.shape:
                raise ValueError(f"parameter {k}: shape {src.shape} does not match {p.shape}")
            p[...] = src
        for i, layer in enumerate(self.layers):
            for name, a in layer.state.items():
                if f"state/{i}.{name}" in arrays:
                    a[...] = arrays[f"state/{i}.{name}"]
        if "prep/config" in arrays:
            self.preprocessor = Preprocessor.from_arrays(arrays, "prep/")
        elif "x_mean" in arrays:  # files of format 1: per-feature mean/std standardisation
            self.preprocessor = Preprocessor.from_standardization(arrays["x_mean"], arrays["x_scale"])
        else:
            self.preprocessor = None

    # -- forward / backward -----------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run all layers on already preprocessed rows.

        Parameters
        ----------
        x : ndarray of shape (n_samples, input_dim), the network's dtype
        training : bool
            Training mode (dropout active, buffers reused and cached for ``backward``).

        Returns
        -------
        ndarray of shape (n_samples, output_dim)
            Logits when the loss fuses the output activation, else outputs.
        """
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, delta: np.ndarray, sgd_step: bool = False) -> None:
        """Backpropagate ``delta`` and fill every layer's ``grads``.

        Parameters
        ----------
        delta : ndarray of shape (n_samples, output_dim), the network's dtype
            ``dL/d output`` (``dL/d logits`` when fused), as ``Loss.gradient``
            leaves it; overwritten.
        sgd_step : bool
            Each layer applies ``p -= grad`` itself instead (plain SGD with the
            learning rate folded into ``delta``).
        """
        for i in range(len(self.layers) - 1, -1, -1):
            delta = self.layers[i].backward(delta, need_input_grad=i > 0, sgd_step=sgd_step)

    # -- prediction ---------------------------------------------------------
    def _check_input(self, X) -> np.ndarray:
        """``X`` as a 2-D array of the network's dtype, with the right width.
        Finiteness is checked by ``_raw``."""
        if not self.built:
            raise ValueError("the network has no weights yet: call fit() first")
        X = np.asarray(X, dtype=self.dtype)
        d = self.n_features_in
        if X.ndim == 1 and X.shape[0] == d:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"X must have shape (n_samples, {d}), got {X.shape}")
        return X

    def _raw(self, X, chunk: int = 8192) -> np.ndarray:
        X = self._check_input(X)
        if X.shape[0] <= chunk:
            return self._forward_checked(X)
        return np.concatenate([self._forward_checked(X[i:i + chunk], first_row=i)
                               for i in range(0, X.shape[0], chunk)])

    def _forward_checked(self, X: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Inference forward pass of raw (unscaled) ``X`` that refuses non-finite inputs.

        When the first layer is dense, its pre-activation output tells: a
        non-finite input makes *every* unit of its row non-finite (inf * w,
        nan * w and inf * 0 are all non-finite, and so is any sum with such a
        term), so column 0 of ``X @ W + b`` flags the rows to look at, at the
        cost of one column instead of a pass over ``X``. A finite row whose sum
        overflows is flagged too; the full check then finds nothing and lets it
        through, as before.
        """
        checked = self.preprocessor is not None
        if checked:
            # refuses infinite values (and NaN where nothing imputes) naming the cell; its output is finite
            x = self.preprocessor.transform(X, first_row=first_row, dtype=self.dtype)
        else:
            x = X
        first = self.layers[0]
        if not isinstance(first, Dense):
            if not checked:
                _check_finite(X, "X", first_row=first_row)
            return self.forward(x)
        z = first.affine(x)
        col = z[:, 0]
        if not checked and not (math.isfinite(col[0]) if col.shape[0] == 1 else np.isfinite(col).all()):
            _check_finite(X, "X", first_row=first_row)
        z = first.activate(z)
        for layer in self.layers[1:]:
            z = layer.forward(z)
        return z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities; binary gives 2 columns.

        Takes ``X`` as `predict` does and raises its ValueErrors, and one for
        a regression network.

        Returns
        -------
        ndarray of shape (n_samples, n_classes), the network's dtype

        See Also
        --------
        predict
        """
        if self.task != "classification":
            raise ValueError("predict_proba is only defined for classification networks")
        out = self.output_activation.forward(self._raw(X))
        if out.shape[1] == 1:
            out = np.hstack([1 - out, out])
        return out

    def predict(self, X) -> np.ndarray:
        """Class indices for classification; values for regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_features,)
            Raw rows (preprocessed here, as in training).

        Returns
        -------
        ndarray
            Classification: shape (n_samples,), int64 class indices.
            Regression: shape (n_samples,) for one output, else
            (n_samples, n_outputs), in the network's dtype.

        Raises
        ------
        ValueError
            For a network without weights, a wrong width or a non-finite
            value (naming its row and column).
        """
        raw = self._raw(X)
        if self.task == "classification":
            return self.loss.labels(raw, probabilities=not self._fused)
        return raw[:, 0] if raw.shape[1] == 1 else raw

    # -- persistence --------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything ``save`` writes, as a dict of arrays (no pickled objects).

        Returns
        -------
        dict of str to ndarray
            ``get_arrays()`` plus ``__spec__`` and ``__meta__`` (0-d JSON strings).
        """
        arrays = dict(self.get_arrays())
        arrays["__spec__"] = _json_array(self.spec)
        arrays["__meta__"] = _json_array({"format": FORMAT_VERSION, "input_dim": self.input_dim,
                                          "dtype": self.dtype.name, "meta": self.meta})
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "Network":
        """Rebuild a network from ``to_arrays()`` output.

        Parameters
        ----------
        arrays : mapping of str to ndarray

        Returns
        -------
        Network
            Built, with the saved weights, preprocessing and ``meta``.

        Raises
        ------
        KeyError, ValueError
            When arrays are missing or do not fit the saved spec.
        """
        spec = _from_json_array(arrays["__spec__"])
        info = _from_json_array(arrays["__meta__"])
        net = cls(spec, dtype=np.dtype(info["dtype"]))
        raw = None
        if "prep/config" in arrays:
            raw = len(_from_json_array(arrays["prep/config"])["columns"])
        net.build(int(info["input_dim"]), np.random.default_rng(0), raw_input_dim=raw)
        net.set_arrays({k: arrays[k] for k in arrays if not k.startswith("__")})
        net.meta = info.get("meta", {})
        return net

    def save(self, path) -> None:
        """Save weights, spec and metadata to an ``.npz`` file (atomic write).

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        ValueError
            When the network has no weights yet.
        """
        if not self.built:
            raise ValueError("cannot save a network without weights: call fit() first")
        atomic_savez(path, self.to_arrays())

    @classmethod
    def load(cls, path) -> "Network":
        """Load a network saved by ``save`` (never unpickles).

        Parameters
        ----------
        path : str, os.PathLike or file object

        Returns
        -------
        Network

        Raises
        ------
        FileNotFoundError
            When there is no such file.
        ValueError
            When the file is not a network saved by ``save``.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                if not hasattr(data, "files") or "__spec__" not in data.files:
                    raise ValueError("no __spec__ array")
                return cls.from_arrays({k: data[k] for k in data.files})
        except (ValueError, OSError, KeyError, EOFError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path} is not a network saved by Network.save") from None
