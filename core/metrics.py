"""Evaluation metrics of a trained model, in numpy only (figures match ``sklearn.metrics``).

Classification metrics take integer class indices ``y`` of shape (n,) and
class probabilities ``proba`` of shape (n, k); regression metrics take targets
and predictions of shape (n,) or (n, m) (several outputs are averaged
uniformly, as scikit-learn's default ``multioutput="uniform_average"``).
The binary ranking scores (``binary_roc_auc``, ``average_precision``) take
``y_true`` of shape (n,), 1 for the positive class and 0 otherwise, and
``score`` of shape (n,), higher meaning more likely positive.
"""
from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of a 1-D array."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def binary_roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``y_true`` (ties counted half, as the trapezoidal ROC does).

    Returns
    -------
    float
        NaN when only one class is present.
    """
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision of ``score`` for ``y_true`` (the step-wise area under the PR curve), as scikit-learn.

    Returns
    -------
    float
        NaN when there is no positive row.
    """
    y = np.asarray(y_true).astype(np.float64)
    s = np.asarray(score, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last row of each distinct threshold
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Counts (k, k): row = true class index, column = predicted class index (int64)."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k).astype(np.int64)


def classification_report(y_true: np.ndarray, proba: np.ndarray) -> dict:
    """All classification figures of class indices ``y_true`` (n,) against probabilities ``proba`` (n, k).

    Parameters
    ----------
    y_true : ndarray of int, shape (n,)
    proba : ndarray of float, shape (n, k)
        Rows sum to one.

    Returns
    -------
    dict
        ``loss`` and ``log_loss`` (mean cross-entropy, probabilities clipped to
        [eps, 1 - eps] of float64), ``accuracy``, ``brier_score`` (binary: of the
        second class; multi-class: mean over rows of the summed squared error),
        ``roc_auc`` (binary) or ``roc_auc_ovr_macro`` / ``roc_auc_ovr_weighted``,
        ``pr_auc`` (binary: average precision of the second class; multi-class:
        macro mean one-vs-rest), ``confusion_matrix`` (k, k) and per class
        ``precision``, ``recall``, ``f1``, ``support`` (0 where undefined).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    n, k = p.shape
    eps = np.finfo(np.float64).eps
    pc = np.clip(p, eps, 1 - eps)
    pc = pc / pc.sum(axis=1, keepdims=True)
    log_loss = float(-np.mean(np.log(pc[np.arange(n), y])))
    pred = np.argmax(p, axis=1)
    cm = confusion_matrix(y, pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    out = {"loss": log_loss, "log_loss": log_loss, "accuracy": float(np.mean(pred == y))}
    if k == 2:
        out["brier_score"] = float(np.mean((p[:, 1] - onehot[:, 1]) ** 2))
        out["roc_auc"] = binary_roc_auc(onehot[:, 1], p[:, 1])
        out["pr_auc"] = average_precision(onehot[:, 1], p[:, 1])
    else:
        out["brier_score"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
        aucs = np.array([binary_roc_auc(onehot[:, c], p[:, c]) for c in range(k)])
        present = support > 0
        out["roc_auc_ovr_macro"] = float(np.mean(aucs[present])) if present.all() else float("nan")
        out["roc_auc_ovr_weighted"] = (float(np.sum(aucs * support) / support.sum()) if present.all()
                                       else float("nan"))
        aps = np.array([average_precision(onehot[:, c], p[:, c]) for c in range(k)])
        out["pr_auc"] = float(np.mean(aps)) if present.all() else float("nan")
    out["confusion_matrix"] = cm
    out["per_class"] = {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}
    return out


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Regression figures of targets against predictions, each (n,) or (n, m).

    Returns
    -------
    dict
        ``loss`` (mean squared error), ``mse``, ``rmse`` (per output, mean over
        outputs), ``mae``, ``r2``, ``explained_variance`` (uniform mean over
        outputs; an output with constant targets scores 1 if predicted exactly,
        else 0; NaN for fewer than 2 rows, where scikit-learn's ``r2_score``
        says they are not well defined) and ``residual_quantiles`` (of ``y_true - y_pred`` at 0, 5, 25,
        50, 75, 95, 100 %, numpy's linear interpolation).
    """
    t = np.asarray(y_true, dtype=np.float64)
    q = np.asarray(y_pred, dtype=np.float64)
    t2 = t.reshape(t.shape[0], -1)
    q2 = q.reshape(q.shape[0], -1)
    r = t2 - q2
    mse = float(np.mean(r ** 2))
    ss_res = np.sum(r ** 2, axis=0)
    ss_tot = np.sum((t2 - t2.mean(axis=0)) ** 2, axis=0)
    var_res = np.sum((r - r.mean(axis=0)) ** 2, axis=0)

    def score(num, den):
        ok = den != 0
        return np.where(ok, 1 - num / np.where(ok, den, 1), np.where(num == 0, 1.0, 0.0))

    if t2.shape[0] < 2:  # one row has no variance to explain: undefined, not a perfect or zero score
        ss_tot = np.full_like(ss_res, np.nan)
    levels = [0, 5, 25, 50, 75, 95, 100]
    quant = np.quantile(r.ravel(), np.array(levels) / 100.0)
    return {"loss": mse, "mse": mse, "rmse": float(np.mean(np.sqrt(ss_res / t2.shape[0]))),
            "mae": float(np.mean(np.abs(r))), "r2": float(np.mean(score(ss_res, ss_tot))),
            "explained_variance": float(np.mean(score(var_res, ss_tot))),
            "residual_quantiles": {f"p{lv}": float(v) for v, lv in zip(quant, levels)}}
