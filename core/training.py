"""Minibatch training with backpropagation: ``fit`` and its resumable state."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

from .early_stopping import EarlyStopping
from .metrics import binary_roc_auc
from .layers import Dense
from .network import Network, _check_finite, _from_json_array, _json_array, atomic_savez
from .optimizers import Optimizer, clip_by_global_norm, make_optimizer
from .preprocessing import Preprocessor
from .schedules import Schedule, make_schedule


# Each epoch's metrics carry val_auc (binary classification) when the validation rows are at most this many.
VAL_AUC_MAX_ROWS = 100_000


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; the message names the epoch and remedies."""

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


class TrainingCancelled(Exception):
    """``should_stop`` (or the callback) asked training to stop."""

    def __init__(self, epoch: int, batch: int | None = None):
        where = f"epoch {epoch}" + (f", before batch {batch}" if batch is not None else "")
        super().__init__(f"training cancelled in {where}")
        self.epoch = epoch
        self.batch = batch


class History(list):
    """Per-epoch metric dicts, plus ``best_epoch``, ``stopped_early`` and ``restored_best``.

    ``restored_best`` is True when the network holds the weights of ``best_epoch``
    (early stopping with ``restore_best``), False when it holds the last epoch's.
    """

    best_epoch: int | None = None
    stopped_early: bool = False
    restored_best: bool = False


class TrainingState:
    """Everything needed to continue training exactly where it stopped.

    Holds copies of the network arrays (running statistics included), optimizer
    state, the training RNG state, the completed epoch count, the history so
    far, the early stopping and learning-rate schedule bookkeeping.
    ``save``/``load`` use an ``.npz`` without pickles.
    """

    def __init__(self, *, epoch: int, net_arrays: dict, opt_arrays: dict, opt_scalars: dict,
                 rng_state: dict, history: list, early: dict, best_arrays: dict | None,
                 stopped: bool = False, schedule: dict | None = None):
        self.schedule = schedule or {}
        self.epoch = epoch
        self.net_arrays = net_arrays
        self.opt_arrays = opt_arrays
        self.opt_scalars = opt_scalars
        self.rng_state = rng_state
        self.history = history
        self.early = early
        self.best_arrays = best_arrays
        self.stopped = stopped

    @classmethod
    def capture(cls, net: Network, opt: Optimizer, rng: np.random.Generator, history: list,
                tracker: EarlyStopping, *, epoch: int, stopped: bool,
                schedule: Schedule | None = None) -> "TrainingState":
        """Copy the state of a run after an epoch (what ``fit`` hands its callback).

        Parameters
        ----------
        net : Network
        opt : Optimizer
        rng : numpy.random.Generator
            The training generator (shuffling, dropout).
        history : list of dict
            The metrics of every epoch so far.
        tracker : EarlyStopping
        epoch : int
            Epochs completed.
        stopped : bool
            Whether training is to stop after this epoch.
        schedule : Schedule or None
            The learning-rate schedule, whose bookkeeping is kept.

        Returns
        -------
        TrainingState
            Holding copies, so training may go on without changing it.
        """
        return cls(epoch=epoch,
                   net_arrays={k: v.copy() for k, v in net.get_arrays().items()},
                   opt_arrays={k: v.copy() for k, v in opt.state_arrays().items()},
                   opt_scalars=opt.state_scalars(), rng_state=rng.bit_generator.state,
                   history=[dict(h) for h in history], early=tracker.state(),
                   best_arrays=tracker.best_arrays, stopped=stopped,
                   schedule=schedule.state() if schedule is not None else None)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays, for an ``.npz`` (no pickled objects).

        Returns
        -------
        dict of str to ndarray
            ``net/...``, ``opt/...``, ``best/...`` arrays and ``__state__``, a
            0-d string array holding the JSON of the scalars and history.
        """
        arrays = {f"net/{k}": v for k, v in self.net_arrays.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt_arrays.items()})
        if self.best_arrays is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_arrays.items()})
        arrays["__state__"] = _json_array({
            "epoch": self.epoch, "opt_scalars": self.opt_scalars, "rng_state": self.rng_state,
            "history": self.history, "early": self.early, "stopped": self.stopped,
            "has_best": self.best_arrays is not None, "schedule": self.schedule})
        return arrays

    def save(self, path) -> None:
        """Write the state atomically (temporary file, fsync, rename).

        Parameters
        ----------
        path : str or os.PathLike
            Destination ``.npz`` file.
        """
        atomic_savez(path, self.to_arrays())

    @classmethod
    def from_arrays(cls, arrays) -> "TrainingState":
        """Rebuild a state from ``to_arrays()`` output (its inverse).

        Parameters
        ----------
        arrays : mapping of str to ndarray
            ``net/``, ``opt/`` and ``best/`` arrays, copied here, and the
            ``__state__`` JSON of the scalars and history.

        Returns
        -------
        TrainingState

        Raises
        ------
        KeyError
            When ``__state__`` is missing.
        """
        info = _from_json_array(arrays["__state__"])

        def group(prefix):
            return {k[len(prefix):]: np.array(arrays[k]) for k in arrays if k.startswith(prefix)}

        return cls(epoch=info["epoch"], net_arrays=group("net/"), opt_arrays=group("opt/"),
                   opt_scalars=info["opt_scalars"], rng_state=info["rng_state"],
                   history=info["history"], early=info["early"],
                   best_arrays=group("best/") if info["has_best"] else None,
                   stopped=info["stopped"], schedule=info.get("schedule"))

    @classmethod
    def load(cls, path) -> "TrainingState":
        """Read a state written by ``save`` (never unpickles).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        TrainingState

        Raises
        ------
        OSError
            When the file cannot be read.
        """
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays({k: data[k] for k in data.files})


# -- input checks -------------------------------------------------------------
def _as_2d_float(X, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    return X


def _gather_rows(X: np.ndarray, idx: np.ndarray, dtype, chunk: int = 8192) -> np.ndarray:
    """``X[idx]`` as a new C-contiguous array of ``dtype``, gathered in chunks so
    that float64 data never has a full-size float64 temporary next to it."""
    out = np.empty((idx.shape[0], X.shape[1]), dtype=dtype)
    for s in range(0, idx.shape[0], chunk):
        out[s:s + chunk] = np.take(X, idx[s:s + chunk], axis=0)
    return out


def _check_targets(net: Network, y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but X has {n}")
    if net.task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{name} must hold one class index per row, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) \
                    or not np.all(np.mod(y, 1) == 0):
                raise ValueError(f"{name} must hold integer class indices for classification")
        y = y.astype(np.int64)
        k = 2 if net.output_dim == 1 else net.output_dim
        if y.min() < 0 or y.max() >= k:
            raise ValueError(f"{name} holds class indices outside 0..{k - 1} "
                             f"(the output layer has {net.output_dim} unit(s))")
        return y
    y = np.asarray(y, dtype=net.dtype)
    m = 1 if y.ndim == 1 else y.shape[1]
    if y.ndim > 2 or m != net.output_dim:
        raise ValueError(f"{name} has {m} target column(s) but the output layer has "
                         f"{net.output_dim} unit(s)")
    _check_finite(y.reshape(n, -1), name)
    return y.reshape(n, net.output_dim)


# -- evaluation -----------------------------------------------------------------
def _evaluate(net: Network, X: np.ndarray, y: np.ndarray, prefix: str, chunk: int = 8192,
              auc: bool = False) -> dict:
    """Loss and metrics of ``net`` on already-scaled ``X`` (evaluation mode); with ``auc`` (binary
    classification only) also the ROC AUC of the positive class."""
    n = X.shape[0]
    loss_sum = 0.0
    if net.task == "classification":
        correct = 0
        scores = np.empty(n, dtype=np.float64) if auc else None
        for s in range(0, n, chunk):
            out = net.forward(X[s:s + chunk])
            yb = y[s:s + chunk]
            # read before value() turns logits into probabilities
            pred = net.loss.labels(out, probabilities=net.loss.fused_activation is None)
            if auc:  # a score monotone in P(class 1): the logit (margin) or the probability
                scores[s:s + chunk] = out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0]
            correct += int(np.count_nonzero(pred == yb))
            loss_sum += net.loss.value(out, yb) * len(yb)
        metrics = {f"{prefix}_loss": loss_sum / n, f"{prefix}_accuracy": correct / n}
        if auc:
            metrics[f"{prefix}_auc"] = binary_roc_auc(y, scores)
        return metrics
    abs_sum = 0.0
    col_sq = np.zeros(y.shape[1])
    for s in range(0, n, chunk):
        out = net.forward(X[s:s + chunk])
        yb = y[s:s + chunk]
        d = out.astype(np.float64) - yb
        abs_sum += float(np.abs(d).sum())
        col_sq += (d * d).sum(axis=0)
        loss_sum += net.loss.value(out, yb) * len(yb)
    sq_sum = float(col_sq.sum())
    size = y.size
    # R² per output column, then their plain mean (scikit-learn's r2_score
    # default); a constant column scores 0.
    col_var = ((y - y.mean(axis=0)) ** 2).sum(axis=0, dtype=np.float64)
    r2 = np.where(col_var > 0, 1.0 - col_sq / np.where(col_var > 0, col_var, 1.0), 0.0)
    return {f"{prefix}_loss": loss_sum / n, f"{prefix}_mae": abs_sum / size,
            f"{prefix}_rmse": math.sqrt(sq_sum / size), f"{prefix}_r2": float(r2.mean())}


# -- preparing the data ---------------------------------------------------------------
class _Data(NamedTuple):
    X_tr: np.ndarray
    y_tr: np.ndarray
    X_va: np.ndarray | None
    y_va: np.ndarray | None
    w_tr: np.ndarray | None = None  # per-row loss weights of the training rows
    val_auc: bool = False  # each epoch's metrics carry val_auc (see _val_auc_on)


class _Step(NamedTuple):
    """What each minibatch's update applies besides the optimizer's own rule."""

    weight_decay: float = 0.0
    l1: float = 0.0
    clip_norm: float | None = None


def _check_options(epochs, batch_size, weight_decay, validation, validation_split,
                   l1=0.0, clip_norm=None) -> tuple[int, int, _Step]:
    epochs = _int_arg(epochs, "epochs")
    batch_size = _int_arg(batch_size, "batch_size")
    for name, value in (("weight_decay", weight_decay), ("l1", l1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if clip_norm is not None and (isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float))
                                  or not math.isfinite(clip_norm) or clip_norm <= 0):
        raise ValueError(f"clip_norm must be a number > 0 or None, got {clip_norm!r}")
    if not isinstance(validation_split, (int, float)) or not (0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation is not None and validation_split:
        raise ValueError("give either validation or validation_split, not both")
    return epochs, batch_size, _Step(float(weight_decay), float(l1),
                                     None if clip_norm is None else float(clip_norm))


def _preprocessing_option(standardize: bool, preprocessing) -> Preprocessor | None:
    if standardize and preprocessing is not None:
        raise ValueError("give either standardize or preprocessing, not both")
    if isinstance(preprocessing, dict):
        return Preprocessor(**preprocessing)
    if standardize:
        return Preprocessor.standardize()
    if preprocessing is not None and not isinstance(preprocessing, Preprocessor):
        raise ValueError(f"preprocessing must be a Preprocessor or a dict, got {type(preprocessing).__name__}")
    return preprocessing


def _check_data(net: Network, X, y, prep: Preprocessor | None, resume):
    """X and y checked; the preprocessor to use (the option, the checkpoint's or the
    network's own, or None) and the loaded checkpoint."""
    X = _as_2d_float(X, "X")
    n, d = X.shape
    if net.input_dim is not None and d != net.input_dim and d != net.n_features_in \
            and d != net.spec.get("input_dim"):
        raise ValueError(f"X has {d} features but the network expects input_dim {net.input_dim}")
    y = _check_targets(net, y, n, "y")
    narrowing = X.dtype.itemsize > net.dtype.itemsize and np.issubdtype(X.dtype, np.floating)
    limit = float(np.finfo(net.dtype).max) if narrowing else None
    prep = prep if prep is not None else net.preprocessor
    if resume is not None and not isinstance(resume, TrainingState):
        resume = TrainingState.load(resume)
    if resume is not None and "prep/config" in resume.net_arrays:
        prep = Preprocessor.from_arrays(resume.net_arrays)
    if prep is not None:  # NaN is a missing value where the preprocessor imputes it
        prep.check_values(X, name="X", limit=limit)
    else:
        _check_finite(X, "X", limit=limit)
    return X, y, prep, resume


def _check_sample_weight(sample_weight, n: int) -> np.ndarray | None:
    """``sample_weight`` as float64 (n,), finite and >= 0, or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}")
    w = w.astype(np.float64).reshape(-1) if w.ndim == 2 and w.shape[1] == 1 else w.astype(np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row, got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"sample_weight must be finite and >= 0, got {w[r]} at row {r}")
    return w


def class_weights(class_weight, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Weight of each class index for ``fit``'s ``class_weight`` option.

    Parameters
    ----------
    class_weight : "balanced" or dict of int to float
        ``"balanced"``: ``n_samples / (n_present_classes * count(class))`` over the
        training rows, as scikit-learn's ``compute_class_weight`` (a class with no
        training row gets 1). A dict: class index to weight (> = 0); classes left
        out get 1 (Keras' ``class_weight``).
    y : ndarray of shape (n_samples,), int64
        The training rows' class indices.
    n_classes : int

    Returns
    -------
    ndarray of shape (n_classes,), float64

    Raises
    ------
    ValueError
        For another value, a class index out of range or a weight < 0, naming it.
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced' or a dict of class to weight, "
                             f"got {class_weight!r}")
        present = counts > 0
        out = np.ones(n_classes)
        out[present] = len(y) / (present.sum() * counts[present])
        return out
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be 'balanced' or a dict of class to weight, got {class_weight!r}")
    out = np.ones(n_classes)
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < n_classes:
            raise ValueError(f"class_weight: class {key!r} is not a class index in 0..{n_classes - 1}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight < 0:
            raise ValueError(f"class_weight[{key}] must be a number >= 0, got {weight!r}")
        out[int(key)] = float(weight)
    return out


def _row_weights(net: Network, data: _Data, class_weight) -> _Data:
    """The training rows' loss weights: sample weights times class weights (None when neither)."""
    if class_weight is not None and net.task != "classification":
        raise ValueError("class_weight is for classification; use sample_weight for regression")
    w = data.w_tr
    if class_weight is not None:
        k = 2 if net.output_dim == 1 else net.output_dim
        cw = class_weights(class_weight, data.y_tr, k)[data.y_tr]
        w = cw if w is None else w * cw
    return data._replace(w_tr=None if w is None else w.astype(net.dtype))


def validation_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``fit`` trains and validates on for a ``validation_split``.

    A seeded random permutation of the rows: the first ``max(1, round(n * validation_split))`` are the
    validation rows. Not stratified: a rare class may be missing from the validation rows.

    Parameters
    ----------
    n : int
        Number of rows.
    validation_split : float
        Fraction of the rows held out, in (0, 1).
    seed : int
        The ``seed`` given to ``fit``.

    Returns
    -------
    train, validation : ndarray of shape (n - n_val,) and (n_val,), dtype int64
        Row indices, each in ascending order.

    Raises
    ------
    ValueError
        If the split leaves no training rows.
    """
    n_val = max(1, int(round(n * validation_split)))
    if n_val >= n:
        raise ValueError(f"validation_split {validation_split} leaves no training rows of {n}")
    perm = np.random.default_rng([seed, 1]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _split_validation(net: Network, X: np.ndarray, y: np.ndarray, validation, validation_split: float,
                      seed: int, prep: Preprocessor | None, sample_weight: np.ndarray | None = None) -> _Data:
    """Training and validation rows: a seeded random ``validation_split`` of the rows
    (each part in its original order), or the ``validation`` pair, checked."""
    n, d = X.shape
    if validation_split:
        tr_idx, va_idx = validation_indices(n, validation_split, seed)
        return _Data(_gather_rows(X, tr_idx, net.dtype), y[tr_idx],
                     _gather_rows(X, va_idx, net.dtype), y[va_idx],
                     None if sample_weight is None else sample_weight[tr_idx])
    if validation is None:
        return _Data(X, y, None, None, sample_weight)
    X_va = _as_2d_float(validation[0], "validation X")
    if X_va.shape[1] != d:
        raise ValueError(f"validation X has {X_va.shape[1]} features, X has {d}")
    y_va = _check_targets(net, validation[1], X_va.shape[0], "validation y")
    if prep is not None:
        prep.check_values(X_va, name="validation X")
    else:
        _check_finite(X_va, "validation X")
    return _Data(X, y, np.array(X_va, dtype=net.dtype), y_va, sample_weight)


def _build(net: Network, data: _Data, prep: Preprocessor | None, seed: int, resume,
           output_bias: str = "zeros") -> _Data:
    """Fit the preprocessing on the training rows only (never the validation rows),
    build the network (or restore the checkpoint's arrays) and return one working
    copy of the rows, preprocessed, C-contiguous, in the network's dtype."""
    X_tr, y_tr, X_va, y_va, w_tr, _ = data
    if output_bias not in ("zeros", "target_mean"):
        raise ValueError(f"output_bias must be 'zeros' or 'target_mean', got {output_bias!r}")
    if prep is not None and not prep.fitted:
        prep.fit(X_tr)
    d_in = prep.n_features_out if prep is not None else X_tr.shape[1]
    if not net.built:
        net.build(d_in, np.random.default_rng([seed, 0]), raw_input_dim=X_tr.shape[1])
        last = net.layers[-1]
        if output_bias == "target_mean" and net.task == "regression" and isinstance(last, Dense) \
                and last.activation_name == "linear":
            # Start from the mean prediction (the best constant under MSE): with targets far from 0
            # (e.g. diabetes, mean 152) the first epochs would otherwise be spent moving the bias.
            weights = w_tr if w_tr is not None and w_tr.sum() > 0 else None
            last.params["b"][...] = np.average(y_tr, axis=0, weights=weights)
    elif net.input_dim != d_in:
        raise ValueError(f"the preprocessed X has {d_in} features but the network was built for "
                         f"{net.input_dim}")
    net.preprocessor = prep
    if resume is not None:
        net.set_arrays(resume.net_arrays)
    if prep is not None:
        X_tr = prep.transform(X_tr, dtype=net.dtype)
        if X_va is not None:
            X_va = prep.transform(X_va, dtype=net.dtype)
    elif X_tr.dtype != net.dtype or not X_tr.flags.c_contiguous:
        X_tr = np.ascontiguousarray(X_tr, dtype=net.dtype)
    return _Data(X_tr, y_tr, X_va, y_va, w_tr, data.val_auc)


# -- fit --------------------------------------------------------------------------------
def fit(net: Network, X, y, *, epochs: int = 10, batch_size: int = 32, seed: int = 0,
        optimizer: dict | None = None, weight_decay: float = 0.0, standardize: bool = False,
        validation: tuple | None = None, validation_split: float = 0.0, early_stopping: dict | None = None,
        preprocessing: Preprocessor | dict | None = None, should_stop: Callable[[], bool] | None = None,
        callback: Callable[[dict, TrainingState], object] | None = None,
        resume: TrainingState | str | Path | None = None, lr_schedule: dict | None = None,
        clip_norm: float | None = None, l1: float = 0.0, class_weight=None, sample_weight=None, on_batch=None,
        output_bias: str = "zeros") -> History:
    """Train ``net`` with minibatch gradient descent and backpropagation.

    Parameters
    ----------
    net : Network
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class indices 0..k-1 for classification (0/1 for binary); floats for regression.
    epochs, batch_size : int
        Passes over the data; rows per minibatch (reshuffled every epoch from ``seed``).
    optimizer : dict
        ``{"type": <a key of OPTIMIZERS: sgd, adam, adamw, rmsprop>, **its options}``.
    weight_decay, l1 : float
        L2 and L1 penalty coefficients (added to the gradient, after clipping).
    lr_schedule : dict or None
        ``{"type": <a key of core.schedules.SCHEDULES>, **options}``; each epoch's ``lr`` is in its metrics.
    clip_norm : float or None
        Scale the gradients down to this global L2 norm when it is exceeded.
    class_weight : "balanced", dict of class index to weight, or None
        See ``class_weights``; multiplies ``sample_weight``.
    sample_weight : array-like of shape (n_samples,) or None
        Per-row loss weights (>= 0): the loss is ``sum_i w_i l_i / n``.
    validation, validation_split : (X_val, y_val) or None; float in [0, 1)
        Validation rows, or this fraction of the rows held out (chosen by ``seed``).
    early_stopping : dict or None
        ``{"monitor": "val_loss", "patience": 5, "min_delta": 0.0}``; the best epoch's weights are restored.
    standardize : bool
        Short for ``preprocessing=Preprocessor.standardize()`` (a missing value stays an error).
    preprocessing : Preprocessor or dict, optional
        An unfitted :class:`~core.preprocessing.Preprocessor` (or its keyword arguments
        ``{"columns", "numeric", "categorical"}``), fitted on the training rows only and kept as
        ``net.preprocessor`` so that ``predict`` takes raw rows (NaN = missing). With neither this
        nor ``standardize``, a preprocessor the network already has is reused.
    seed : int
        Seeds weight initialisation (if not built yet), the validation split, shuffling and dropout.
    callback : callable(metrics, state) or None
        Called after every epoch with its metrics and a ``TrainingState`` (``state.save(path)``
        makes a checkpoint). A truthy return value stops training after this epoch.
    should_stop, on_batch : callable() -> bool, callable(epoch, done, n_batches), or None
        Called before every minibatch: ``should_stop`` returning True raises ``TrainingCancelled``; ``on_batch``
        gets the epoch in progress (1-based), its minibatches done and the minibatches per epoch.
    resume : TrainingState or path, or None
        Continue from a saved state: with the same data and arguments, the run ends with
        exactly the weights of an uninterrupted one.
    output_bias : {"zeros", "target_mean"}
        Regression: ``"target_mean"`` starts a linear output layer's bias at the training targets' mean.

    Returns
    -------
    History
        Per-epoch dicts (``epoch``, ``lr``, ``train_loss``, ``val_loss``, ``train_accuracy``/``val_accuracy``/
        ``val_auc`` (binary) or ``train_mae``/``val_mae``/``val_rmse``/``val_r2``, ``seconds``); ``best_epoch``.

    Raises
    ------
    ValueError
        Invalid arguments or data (the message names them).
    TrainingDiverged, TrainingCancelled
        The loss became NaN or infinite; ``should_stop`` returned True.
    """
    epochs, batch_size, step = _check_options(epochs, batch_size, weight_decay, validation,
                                              validation_split, l1, clip_norm)
    opt, prep = make_optimizer(optimizer), _preprocessing_option(standardize, preprocessing)
    X, y, prep, resume = _check_data(net, X, y, prep, resume)
    data = _split_validation(net, X, y, validation, validation_split, seed, prep,
                             _check_sample_weight(sample_weight, X.shape[0]))
    tracker = EarlyStopping.from_options(early_stopping, has_val=data.X_va is not None, task=net.task)
    schedule = make_schedule(lr_schedule, opt.learning_rate, epochs, task=net.task, has_val=data.X_va is not None)
    data = _val_auc_on(net, data, tracker.monitor, (lr_schedule or {}).get("monitor"))
    data = _build(net, _row_weights(net, data, class_weight), prep, seed, resume, output_bias)
    return _train(net, data, opt, tracker, epochs=epochs, batch_size=batch_size, step=step, seed=seed,
                  callback=callback, should_stop=should_stop, resume=resume, schedule=schedule, on_batch=on_batch)


def _val_auc_on(net: Network, data: _Data, *monitors) -> _Data:
    """Turn on ``val_auc`` (each epoch's ROC AUC on the validation rows, a monitor for early stopping and
    ``reduce_on_plateau``) for binary classification with both classes among at most ``VAL_AUC_MAX_ROWS``
    validation rows (it sorts them each epoch; multi-class training never pays for it). A monitor
    ``val_auc`` without it is a ValueError that says why."""
    y = data.y_va
    on = (net.task == "classification" and y is not None and net.output_dim <= 2
          and y.shape[0] <= VAL_AUC_MAX_ROWS and y.min() != y.max())
    for where, monitor in zip(("early_stopping", "lr_schedule"), monitors):
        if monitor == "val_auc" and not on:
            raise ValueError(
                f"{where}.monitor 'val_auc' needs binary classification with both classes among the "
                f"validation rows (at most {VAL_AUC_MAX_ROWS:,}); got "
                + ("a regression network" if net.task != "classification" else
                   f"{net.output_dim} classes" if net.output_dim > 2 else
                   "no validation rows" if y is None else
                   f"{y.shape[0]:,} validation rows" if y.shape[0] > VAL_AUC_MAX_ROWS else
                   "validation rows of one class"))
    return data._replace(val_auc=bool(on))


def _batch_poll(should_stop, on_batch, epoch: int, n_batches: int):
    """``should_stop`` preceded by ``on_batch(epoch, batches_done, n_batches)``: one hook before each minibatch."""
    done = -1

    def poll() -> bool:
        nonlocal done
        done += 1
        on_batch(epoch, done, n_batches)
        return should_stop is not None and should_stop()
    return poll


def _train(net: Network, data: _Data, opt: Optimizer, tracker: EarlyStopping, *, epochs: int,
           batch_size: int, step: _Step, seed: int, callback, should_stop,
           resume: TrainingState | None, schedule: Schedule | None, on_batch=None) -> History:
    """The epochs: train on the minibatches, evaluate, track the best epoch, checkpoint."""
    rng = np.random.default_rng([seed, 2])  # shuffling and dropout
    for layer in net.layers:
        if hasattr(layer, "rng"):
            layer.rng = rng
    history, epoch, stopped = History(), 0, False
    if resume is not None:
        opt.load_state(resume.opt_arrays, resume.opt_scalars)
        rng.bit_generator.state = resume.rng_state
        history.extend(resume.history)
        tracker.load(resume.early, resume.best_arrays)
        if schedule is not None:
            schedule.load(resume.schedule)
        epoch, stopped = resume.epoch, resume.stopped
    opt.use_pack(net.pack_grads())  # whole-array optimizer steps (the same weights as per parameter)
    batches = _Minibatches(data.X_tr, data.y_tr, batch_size, data.w_tr)
    base_lr = opt.learning_rate
    while epoch < epochs and not stopped:
        epoch += 1
        t0 = time.perf_counter()
        opt.learning_rate = schedule.lr(epoch) if schedule is not None else base_lr
        poll = should_stop if on_batch is None else _batch_poll(
            should_stop, on_batch, epoch, -(-data.X_tr.shape[0] // batch_size))
        metrics = {"epoch": epoch, **_train_epoch(net, opt, batches(rng), step, epoch, poll),
                   "lr": opt.learning_rate}
        if data.X_va is not None:
            metrics.update(_evaluate(net, data.X_va, data.y_va, "val", auc=data.val_auc))
        for k, v in metrics.items():
            if k != "epoch" and not math.isfinite(v):
                raise _diverged(epoch, k, v, opt.learning_rate)
        metrics["seconds"] = time.perf_counter() - t0
        stopped = tracker.update(epoch, metrics, net.get_arrays)
        if schedule is not None:
            schedule.update(epoch, metrics)
        history.append(metrics)
        if callback is not None and callback(dict(metrics), TrainingState.capture(
                net, opt, rng, history, tracker, epoch=epoch, stopped=stopped, schedule=schedule)):
            stopped = True
    tracker.restore(net.set_arrays)
    history.best_epoch = tracker.best_epoch
    history.restored_best = tracker.restore_best and tracker.best_arrays is not None
    history.stopped_early = tracker.enabled and stopped and epoch < epochs
    return history


def _train_epoch(net: Network, opt: Optimizer, batches, step: _Step, epoch: int,
                 should_stop) -> dict:
    """One epoch of minibatch gradient descent; returns its training metrics."""
    keys, params, grads = (list(t) for t in zip(*net.param_items()))
    scale = opt.learning_rate if opt.folds_learning_rate else 1.0
    # Plain SGD: the layers subtract the (learning-rate scaled) gradients
    # during backpropagation, in one accumulating GEMM per weight matrix.
    step_in_backward = opt.steps_in_backward(step.weight_decay) and not step.l1 and step.clip_norm is None
    # Clipping sees the loss gradient (times the folded learning rate for SGD).
    clip = None if step.clip_norm is None else step.clip_norm * scale
    constrained = [layer for layer in net.layers if layer.constrained]
    totals = _EpochTotals(net)
    for b, (xb, yb, wb) in enumerate(batches):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(epoch, b)
        out = net.forward(xb, training=True)  # forward pass
        loss = net.loss.value(out, yb, wb)  # the loss; out now holds the network's outputs
        if not math.isfinite(loss):
            raise _diverged(epoch, "the loss", loss, opt.learning_rate, batch=b + 1)
        totals.add(loss, out, yb)
        net.loss.gradient(out, yb, scale, wb)  # dL/d(out), where backpropagation starts
        if step_in_backward:
            net.backward(out, sgd_step=True)
            opt.count_step()
        else:
            net.backward(out)  # backpropagation: every layer's grads
            if clip is not None:
                clip_by_global_norm(grads, clip)
            opt.step(keys, params, grads, step.weight_decay, step.l1)  # the gradient step
        for layer in constrained:
            layer.constrain()
    return totals.metrics()


class _Minibatches:
    """The training rows, reshuffled each epoch, in minibatches; one row buffer per batch size."""

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int, w: np.ndarray | None = None):
        self.X, self.y, self.w, self.batch_size = X, y, w, batch_size
        self._bufs: dict[int, np.ndarray] = {}

    def __call__(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        n = self.X.shape[0]
        perm = rng.permutation(n)
        for start in range(0, n, self.batch_size):
            idx = perm[start:start + self.batch_size]
            m = idx.shape[0]
            xb = self._bufs.get(m)
            if xb is None:
                xb = self._bufs[m] = np.empty((m, self.X.shape[1]), dtype=self.X.dtype)
            # mode="clip": the indices are a permutation, always in range, and
            # the default "raise" makes take() copy through a temporary.
            np.take(self.X, idx, axis=0, out=xb, mode="clip")
            yield xb, self.y[idx], None if self.w is None else self.w[idx]


class _EpochTotals:
    """Sums over an epoch's minibatches: the loss, and correct labels or absolute errors."""

    def __init__(self, net: Network):
        self.loss = net.loss
        self.classification = net.task == "classification"
        self.output_dim = net.output_dim
        self.rows = 0
        self.loss_sum = 0.0
        self.correct = 0
        self.abs_sum = 0.0

    def add(self, loss: float, out: np.ndarray, yb: np.ndarray) -> None:
        m = out.shape[0]
        self.rows += m
        self.loss_sum += loss * m
        if self.classification:
            self.correct += int(np.count_nonzero(self.loss.labels(out, probabilities=True) == yb))
        else:
            self.abs_sum += float(np.abs(out - yb).sum())

    def metrics(self) -> dict:
        metrics = {"train_loss": self.loss_sum / self.rows}
        if self.classification:
            metrics["train_accuracy"] = self.correct / self.rows
        else:
            metrics["train_mae"] = self.abs_sum / (self.rows * self.output_dim)
        return metrics


def _diverged(epoch: int, what: str, value: float, learning_rate: float,
              batch: int | None = None) -> TrainingDiverged:
    """The error for a non-finite loss (in a batch) or metric (of an epoch), with what to try."""
    where = f"epoch {epoch}" if batch is None else f"epoch {epoch} (batch {batch})"
    return TrainingDiverged(
        f"training diverged in {where}: {what} became {value}. Try a lower learning rate "
        f"(now {learning_rate:g}), standardize the inputs, or add weight decay.", epoch)


def _int_arg(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
