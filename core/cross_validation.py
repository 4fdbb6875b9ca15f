"""k-fold cross-validation with ``fit``: the folds, the per-fold held-out metrics and their mean and spread.

As H2O's ``nfolds``: k models, each trained on k-1 folds with the same options and scored on the fold it
never saw; the caller then trains the final model on all rows as it would without cross-validation.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np

from .network import Network
from .preprocessing import Preprocessor
from .training import VAL_AUC_MAX_ROWS, _evaluate, fit

# fit's options that cross_validate passes on unchanged to every fold's fit (the rest are its own).
_PER_RUN = ("callback", "resume", "on_batch", "should_stop", "sample_weight")


def fold_indices(y, folds: int, *, seed: int = 0, stratify: bool = True) -> list[np.ndarray]:
    """The held-out rows of each fold: seeded, deterministic, stratified by class if asked.

    Rows are shuffled by ``seed``; with ``stratify`` each class's rows are dealt
    round-robin across the folds, so every fold holds each class's share to
    within one row (scikit-learn's ``StratifiedKFold(shuffle=True)`` in spirit).

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class indices (``stratify``) or regression targets.
    folds : int
        Number of folds k, 2 <= k <= n_samples (and <= the smallest class's rows with ``stratify``).
    seed : int
    stratify : bool
        Keep the class proportions in every fold (classification).

    Returns
    -------
    list of ndarray of int64
        k sorted, disjoint index arrays whose union is ``range(n_samples)``; sizes differ by at most 1.

    Raises
    ------
    ValueError
        When ``folds`` is not an integer in range, naming the limit.
    """
    y = np.asarray(y)
    n = y.shape[0]
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"cross_validation.folds must be an integer >= 2, got {folds!r}")
    if folds > n:
        raise ValueError(f"cross_validation.folds {folds} is more than the {n} rows")
    perm = np.random.default_rng([seed, 3]).permutation(n)
    if stratify:
        labels = y.reshape(n).astype(np.int64)
        counts = np.bincount(labels)
        smallest = int(counts[counts > 0].min())
        if folds > smallest:
            c = int(np.flatnonzero(counts == smallest)[0])
            raise ValueError(f"cross_validation.folds {folds} is more than the {smallest} row(s) of the "
                             f"smallest class (class index {c}); stratified folds need each class in every fold")
        perm = perm[np.argsort(labels[perm], kind="stable")]  # shuffled within each class, classes in order
    owner = np.empty(n, dtype=np.int64)
    owner[perm] = np.arange(n) % folds
    return [np.flatnonzero(owner == f) for f in range(folds)]


def holdout_metrics(net: Network, X: np.ndarray, y: np.ndarray) -> dict:
    """Loss and metrics of a trained network on raw rows it did not train on.

    Parameters
    ----------
    net : Network
        Trained; its preprocessor (if any) is applied to ``X`` first.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) (class indices) or (n_samples, n_outputs)

    Returns
    -------
    dict of str to float
        ``loss`` and ``accuracy`` (and ``auc`` for binary classification with both classes
        among at most ``VAL_AUC_MAX_ROWS`` rows), or ``loss``, ``mae``, ``rmse``, ``r2``.
    """
    Xt = net.preprocessor.transform(X, dtype=net.dtype) if net.preprocessor is not None \
        else np.ascontiguousarray(X, dtype=net.dtype)
    yt = y if net.task == "classification" else np.asarray(y, dtype=net.dtype).reshape(len(y), net.output_dim)
    auc = (net.task == "classification" and net.output_dim <= 2 and len(y) <= VAL_AUC_MAX_ROWS
           and np.min(y) != np.max(y))
    return {k[len("cv_"):]: v for k, v in _evaluate(net, Xt, yt, "cv", auc=bool(auc)).items()}


def summarize(fold_metrics: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) over the folds of every metric all folds have.

    Parameters
    ----------
    fold_metrics : list of dict
        One dict per fold (``fold``, ``rows``, ``epochs``, ``best_epoch`` and the metrics).

    Returns
    -------
    dict
        ``{"folds": k, "metrics": fold_metrics, "mean": {...}, "std": {...}}``.
    """
    skip = {"fold", "rows", "epochs", "best_epoch"}
    keys = [k for k in fold_metrics[0] if k not in skip and all(k in m for m in fold_metrics)]
    mean = {k: float(np.mean([m[k] for m in fold_metrics])) for k in keys}
    std = {k: float(np.std([m[k] for m in fold_metrics], ddof=1)) for k in keys}
    return {"folds": len(fold_metrics), "metrics": fold_metrics, "mean": mean, "std": std}


def cross_validate(spec: dict, X, y, *, folds: int = 5, seed: int = 0, sample_weight=None,
                   should_stop: Callable[[], bool] | None = None,
                   on_fold: Callable[[int, int], object] | None = None, on_batch=None, **fit_options) -> dict:
    """k-fold cross-validation of the network ``spec`` trained with ``fit``'s options.

    Each fold's model is a fresh ``Network.from_spec(spec)`` trained with ``fit(**fit_options, seed=seed)``
    on the other folds' rows (its preprocessing learned from them only; ``validation_split`` and
    ``early_stopping`` apply inside those rows, ``validation`` as given), then scored on its own
    fold, which no part of its training saw. Deterministic for a given ``seed``.

    Parameters
    ----------
    spec : dict
        The network spec (body of ``POST /v1/networks``).
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    folds : int
        k >= 2; stratified by class for classification (see ``fold_indices``).
    seed : int
        Seeds the folds and every fold's ``fit``.
    sample_weight : array-like of shape (n_samples,) or None
        Per-row loss weights, split with the rows.
    should_stop : callable() -> bool, optional
        Polled before every minibatch of every fold; True raises ``TrainingCancelled``.
    on_fold : callable(fold, folds), optional
        Called before each fold's training (``fold`` from 0).
    on_batch : callable(epoch, done, n_batches), optional
        ``fit``'s ``on_batch`` for every fold.
    **fit_options
        The other options of ``fit`` (``epochs``, ``optimizer``, ``preprocessing``, ...);
        not ``callback`` or ``resume``.

    Returns
    -------
    dict
        ``{"folds": k, "metrics": [per fold: {"fold", "rows", "epochs", "best_epoch", "loss",
        "accuracy"[, "auc"] | "mae", "rmse", "r2"}], "mean": {...}, "std": {...}}`` (see ``summarize``).

    Raises
    ------
    ValueError
        Invalid ``folds`` or options (naming them). ``TrainingDiverged`` and ``TrainingCancelled`` as ``fit``.
    """
    bad = sorted(set(fit_options) & set(_PER_RUN))
    if bad:
        raise ValueError(f"cross_validate does not take {bad[0]}")
    X, y = np.asarray(X), np.asarray(y)
    classification = Network.from_spec(spec).task == "classification"
    held_out = fold_indices(y, folds, seed=seed, stratify=classification)
    w = None if sample_weight is None else np.asarray(sample_weight)
    results = []
    for f, te in enumerate(held_out):
        if on_fold is not None:
            on_fold(f, folds)
        tr = np.setdiff1d(np.arange(X.shape[0]), te, assume_unique=True)
        options = dict(fit_options)
        if isinstance(options.get("preprocessing"), Preprocessor):
            options["preprocessing"] = copy.deepcopy(options["preprocessing"])  # each fold learns its own
        net = Network.from_spec(spec)
        history = fit(net, X[tr], y[tr], seed=seed, sample_weight=None if w is None else w[tr],
                      should_stop=should_stop, on_batch=on_batch, **options)
        scores = holdout_metrics(net, X[te], y[te])
        results.append({"fold": f + 1, "rows": int(te.size), "epochs": len(history),
                        "best_epoch": history.best_epoch if history.restored_best else None, **scores})
        if not all(math.isfinite(v) for v in scores.values()):
            raise ValueError(f"cross-validation fold {f + 1}: a held-out metric is not finite ({scores})")
    return summarize(results)
