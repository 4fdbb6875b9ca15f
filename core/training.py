"""Minibatch training with backpropagation: ``fit`` and its resumable state."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .early_stopping import MONITORS, normalize_early_stopping
from .network import Network, _check_finite, _from_json_array, _json_array, atomic_savez
from .optimizers import make_optimizer
from .preprocessing import Preprocessor


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
    """Per-epoch metric dicts, plus ``best_epoch`` and ``stopped_early``."""

    best_epoch: int | None = None
    stopped_early: bool = False


class TrainingState:
    """Everything needed to continue training exactly where it stopped.

    Holds copies of the network arrays, optimizer state, the training RNG
    state, the completed epoch count, the history so far and the early
    stopping bookkeeping. ``save``/``load`` use an ``.npz`` without pickles.
    """

    def __init__(self, *, epoch: int, net_arrays: dict, opt_arrays: dict, opt_scalars: dict,
                 rng_state: dict, history: list, early: dict, best_arrays: dict | None,
                 stopped: bool = False):
        self.epoch = epoch
        self.net_arrays = net_arrays
        self.opt_arrays = opt_arrays
        self.opt_scalars = opt_scalars
        self.rng_state = rng_state
        self.history = history
        self.early = early
        self.best_arrays = best_arrays
        self.stopped = stopped

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"net/{k}": v for k, v in self.net_arrays.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt_arrays.items()})
        if self.best_arrays is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_arrays.items()})
        arrays["__state__"] = _json_array({
            "epoch": self.epoch, "opt_scalars": self.opt_scalars, "rng_state": self.rng_state,
            "history": self.history, "early": self.early, "stopped": self.stopped,
            "has_best": self.best_arrays is not None})
        return arrays

    def save(self, path) -> None:
        """Write the state atomically (temporary file, fsync, rename)."""
        atomic_savez(path, self.to_arrays())

    @classmethod
    def from_arrays(cls, arrays) -> "TrainingState":
        info = _from_json_array(arrays["__state__"])

        def group(prefix):
            return {k[len(prefix):]: np.array(arrays[k]) for k in arrays if k.startswith(prefix)}

        return cls(epoch=info["epoch"], net_arrays=group("net/"), opt_arrays=group("opt/"),
                   opt_scalars=info["opt_scalars"], rng_state=info["rng_state"],
                   history=info["history"], early=info["early"],
                   best_arrays=group("best/") if info["has_best"] else None,
                   stopped=info["stopped"])

    @classmethod
    def load(cls, path) -> "TrainingState":
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
def _evaluate(net: Network, X: np.ndarray, y: np.ndarray, prefix: str, chunk: int = 8192) -> dict:
    """Loss and metrics of ``net`` on already-scaled ``X`` (evaluation mode)."""
    n = X.shape[0]
    loss_sum = 0.0
    if net.task == "classification":
        correct = 0
        for s in range(0, n, chunk):
            out = net.forward(X[s:s + chunk])
            yb = y[s:s + chunk]
            # read before value() turns logits into probabilities
            pred = net.loss.labels(out, probabilities=net.loss.fused_activation is None)
            correct += int(np.count_nonzero(pred == yb))
            loss_sum += net.loss.value(out, yb) * len(yb)
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_accuracy": correct / n}
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


# -- fit ------------------------------------------------------------------------------
def fit(net: Network, X, y, *, epochs: int = 10, batch_size: int = 32,
        optimizer: dict | None = None, weight_decay: float = 0.0,
        validation: tuple | None = None, validation_split: float = 0.0,
        early_stopping: dict | None = None, standardize: bool = False,
        preprocessing: Preprocessor | dict | None = None, seed: int = 0,
        callback: Callable[[dict, TrainingState], object] | None = None,
        should_stop: Callable[[], bool] | None = None,
        resume: TrainingState | str | Path | None = None) -> History:
    """Train ``net`` with minibatch gradient descent and backpropagation.

    Parameters
    ----------
    net : Network
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class indices 0..k-1 for classification (0/1 for binary); floats for
        regression.
    epochs, batch_size : int
        Passes over the data; rows per minibatch. The rows are reshuffled every
        epoch from ``seed``.
    optimizer : dict
        ``{"type": "sgd", "learning_rate", "momentum", "nesterov"}`` or
        ``{"type": "adam", "learning_rate", "beta1", "beta2", "eps"}``.
    weight_decay : float
        L2 penalty coefficient (added to the gradient).
    validation : (X_val, y_val) or None
    validation_split : float in [0, 1)
        Hold out this fraction of the rows (chosen by ``seed``) instead.
    early_stopping : dict or None
        ``{"monitor": "val_loss", "patience": 5, "min_delta": 0.0}``; the best
        epoch's weights are restored at the end.
    standardize : bool
        Learn per-feature mean and std on the training rows; ``predict``
        applies them automatically. Short for
        ``preprocessing=Preprocessor.standardize()`` (a missing value stays an error).
    preprocessing : Preprocessor or dict, optional
        An unfitted :class:`~core.preprocessing.Preprocessor` (or its keyword
        arguments ``{"columns", "numeric", "categorical"}``). It is fitted on
        the training rows only (after ``validation_split``), applied to the
        training and validation rows, and kept as ``net.preprocessor`` so that
        ``predict`` takes raw rows (NaN = missing). With neither this nor
        ``standardize``, a preprocessor the network already has is reused.
    seed : int
        Seeds weight initialisation (if the network has no weights yet),
        the validation split, shuffling and dropout.
    callback : callable(metrics, state) or None
        Called after every epoch with the epoch's metrics and a
        ``TrainingState`` (``state.save(path)`` makes a checkpoint). A truthy
        return value stops training after this epoch.
    should_stop : callable() -> bool, or None
        Polled before every minibatch; when it returns True, training raises
        ``TrainingCancelled`` (so cancelling takes effect within one minibatch).
    resume : TrainingState or path, or None
        Continue from a saved state. Given the same data and arguments, the
        resumed run ends with exactly the weights of an uninterrupted one.

    Returns
    -------
    History
        A list of per-epoch dicts (``epoch``, ``train_loss``, ``val_loss``,
        ``train_accuracy``/``val_accuracy`` or ``train_mae``/``val_mae``/
        ``val_rmse``/``val_r2``, ``seconds``) with ``best_epoch``.

    Raises
    ------
    ValueError
        Invalid arguments or data (the message names them).
    TrainingDiverged
        The loss became NaN or infinite.
    TrainingCancelled
        ``should_stop`` returned True.
    """
    epochs = _int_arg(epochs, "epochs")
    batch_size = _int_arg(batch_size, "batch_size")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not isinstance(validation_split, (int, float)) or not (0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation is not None and validation_split:
        raise ValueError("give either validation or validation_split, not both")
    opt = make_optimizer(optimizer)

    if standardize and preprocessing is not None:
        raise ValueError("give either standardize or preprocessing, not both")
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessor(**preprocessing)
    elif standardize:
        preprocessing = Preprocessor.standardize()
    elif preprocessing is not None and not isinstance(preprocessing, Preprocessor):
        raise ValueError(f"preprocessing must be a Preprocessor or a dict, got {type(preprocessing).__name__}")
    X = _as_2d_float(X, "X")
    n, d = X.shape
    if net.input_dim is not None and d != net.input_dim and d != net.n_features_in \
            and d != net.spec.get("input_dim"):
        raise ValueError(f"X has {d} features but the network expects input_dim {net.input_dim}")
    y = _check_targets(net, y, n, "y")
    narrowing = X.dtype.itemsize > net.dtype.itemsize and np.issubdtype(X.dtype, np.floating)
    limit = float(np.finfo(net.dtype).max) if narrowing else None
    checker = preprocessing if preprocessing is not None else net.preprocessor
    if resume is not None and not isinstance(resume, TrainingState):
        resume = TrainingState.load(resume)
    if resume is not None and "prep/config" in resume.net_arrays:
        checker = preprocessing = Preprocessor.from_arrays(resume.net_arrays)
    if checker is not None:  # NaN is a missing value where the preprocessor imputes it
        checker.check_values(X, name="X", limit=limit)
    else:
        _check_finite(X, "X", limit=limit)

    rng_split = np.random.default_rng([seed, 1])
    if validation_split:
        n_val = max(1, int(round(n * validation_split)))
        if n_val >= n:
            raise ValueError(f"validation_split {validation_split} leaves no training rows of {n}")
        perm = rng_split.permutation(n)
        tr_idx, va_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
        X_tr, y_tr = _gather_rows(X, tr_idx, net.dtype), y[tr_idx]
        X_va, y_va = _gather_rows(X, va_idx, net.dtype), y[va_idx]
    else:
        X_tr, y_tr = X, y
        X_va = y_va = None
        if validation is not None:
            X_va = _as_2d_float(validation[0], "validation X")
            if X_va.shape[1] != d:
                raise ValueError(f"validation X has {X_va.shape[1]} features, X has {d}")
            y_va = _check_targets(net, validation[1], X_va.shape[0], "validation y")
            if checker is not None:
                checker.check_values(X_va, name="validation X")
            else:
                _check_finite(X_va, "validation X")
            X_va = np.array(X_va, dtype=net.dtype)
    early = normalize_early_stopping(early_stopping, X_va is not None, net.task)

    # The preprocessing: restored from the checkpoint, or learned from the training rows only
    # (never the validation rows), or the one the network already has.
    prep = preprocessing if preprocessing is not None else net.preprocessor
    if prep is not None and not prep.fitted:
        prep.fit(X_tr)
    d_in = prep.n_features_out if prep is not None else d
    if not net.built:
        net.build(d_in, np.random.default_rng([seed, 0]), raw_input_dim=d)
    elif net.input_dim != d_in:
        raise ValueError(f"the preprocessed X has {d_in} features but the network was built for "
                         f"{net.input_dim}")
    net.preprocessor = prep
    if resume is not None:
        net.set_arrays(resume.net_arrays)

    # One working copy of the training rows, in the network's dtype and preprocessed.
    if prep is not None:
        X_tr = prep.transform(X_tr, dtype=net.dtype)
        if X_va is not None:
            X_va = prep.transform(X_va, dtype=net.dtype)
    elif X_tr.dtype != net.dtype or not X_tr.flags.c_contiguous:
        X_tr = np.ascontiguousarray(X_tr, dtype=net.dtype)
    d = X_tr.shape[1]

    rng = np.random.default_rng([seed, 2])
    for layer in net.layers:
        if hasattr(layer, "rng"):
            layer.rng = rng
    history = History()
    best_value = None
    best_epoch = None
    best_arrays = None
    wait = 0
    start_epoch = 0
    stopped = False
    if resume is not None:
        opt.load_state(resume.opt_arrays, resume.opt_scalars)
        rng.bit_generator.state = resume.rng_state
        history.extend(resume.history)
        start_epoch = resume.epoch
        best_value = resume.early.get("best_value")
        best_epoch = resume.early.get("best_epoch")
        wait = resume.early.get("wait", 0)
        best_arrays = resume.best_arrays
        stopped = resume.stopped

    keys, params, grads = zip(*net.param_items())
    keys, params, grads = list(keys), list(params), list(grads)
    n_tr = X_tr.shape[0]
    scale = opt.learning_rate if opt.folds_learning_rate else 1.0
    # Plain SGD: the layers subtract the (learning-rate scaled) gradients
    # during backpropagation, in one accumulating GEMM per weight matrix.
    step_in_backward = opt.steps_in_backward(weight_decay)
    classification = net.task == "classification"
    epoch = start_epoch
    xbufs: dict[int, np.ndarray] = {}

    while epoch < epochs and not stopped:
        epoch += 1
        t0 = time.perf_counter()
        perm = rng.permutation(n_tr)
        loss_sum = 0.0
        correct = 0
        abs_sum = 0.0
        for b, start in enumerate(range(0, n_tr, batch_size)):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(epoch, b)
            idx = perm[start:start + batch_size]
            m = idx.shape[0]
            xb = xbufs.get(m)
            if xb is None:
                xb = xbufs[m] = np.empty((m, d), dtype=net.dtype)
            # mode="clip": the indices are a permutation, always in range, and
            # the default "raise" makes take() copy through a temporary.
            np.take(X_tr, idx, axis=0, out=xb, mode="clip")
            yb = y_tr[idx]
            out = net.forward(xb, training=True)
            if not classification:
                abs_sum += float(np.abs(out - yb).sum())
            loss = net.loss.value(out, yb)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch} (batch {b + 1}): the loss became {loss}. "
                    f"Try a lower learning rate (now {opt.learning_rate:g}), standardize the "
                    "inputs, or add weight decay.", epoch)
            loss_sum += loss * m
            if classification:
                pred = net.loss.labels(out, probabilities=True)
                correct += int(np.count_nonzero(pred == yb))
            net.loss.gradient(out, yb, scale)
            if step_in_backward:
                net.backward(out, sgd_step=True)
                opt.count_step()
            else:
                net.backward(out)
                opt.step(keys, params, grads, weight_decay)

        metrics = {"epoch": epoch, "train_loss": loss_sum / n_tr}
        if classification:
            metrics["train_accuracy"] = correct / n_tr
        else:
            metrics["train_mae"] = abs_sum / (n_tr * net.output_dim)
        if X_va is not None:
            metrics.update(_evaluate(net, X_va, y_va, "val"))
        for k, v in metrics.items():
            if k != "epoch" and not math.isfinite(v):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: {k} became {v}. Try a lower learning "
                    f"rate (now {opt.learning_rate:g}), standardize the inputs, or add weight "
                    "decay.", epoch)
        metrics["seconds"] = time.perf_counter() - t0

        monitor = early["monitor"] if early else ("val_loss" if X_va is not None else "train_loss")
        value = metrics[monitor]
        maximize = MONITORS[monitor].maximize
        min_delta = early["min_delta"] if early else 0.0
        improved = best_value is None or (
            value > best_value + min_delta if maximize else value < best_value - min_delta)
        if improved:
            best_value, best_epoch, wait = value, epoch, 0
            if early and early["restore_best"]:
                best_arrays = {k: v.copy() for k, v in net.get_arrays().items()}
        else:
            wait += 1
            if early and wait >= early["patience"]:
                stopped = True
        history.append(metrics)

        if callback is not None:
            state = TrainingState(
                epoch=epoch,
                net_arrays={k: v.copy() for k, v in net.get_arrays().items()},
                opt_arrays={k: v.copy() for k, v in opt.state_arrays().items()},
                opt_scalars=opt.state_scalars(), rng_state=rng.bit_generator.state,
                history=[dict(h) for h in history],
                early={"best_value": best_value, "best_epoch": best_epoch, "wait": wait},
                best_arrays=best_arrays, stopped=stopped)
            if callback(dict(metrics), state):
                stopped = True

    if early and early["restore_best"] and best_arrays is not None:
        net.set_arrays(best_arrays)
    history.best_epoch = best_epoch
    history.stopped_early = bool(early) and stopped and epoch < epochs
    return history


def _int_arg(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
