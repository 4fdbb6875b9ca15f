"""k-fold cross-validation (core.cross_validate, core.fold_indices) and the per-epoch validation AUC
(``val_auc`` in the history, the ``val_auc`` monitor), checked against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

from core import MONITORS, Network, TrainingCancelled, cross_validate, fit, fold_indices
from core.cross_validation import holdout_metrics

BINARY = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                     {"type": "dense", "units": 1, "activation": "sigmoid"}], "loss": "binary_cross_entropy"}
BINARY_SOFTMAX = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                             {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"}
MULTI = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                    {"type": "dense", "units": 3, "activation": "softmax"}], "loss": "cross_entropy"}
REG = {"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                  {"type": "dense", "units": 1, "activation": "linear"}], "loss": "mse"}
ADAM = {"type": "adam", "learning_rate": 0.01}


def binary_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.standard_normal(n) > 0.6).astype(np.int64)  # about 30% positive
    return X, y


def multi_data(n=240, seed=0, counts=None):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), counts) if counts is not None else rng.integers(0, 3, n)
    X = (np.eye(3, 4)[y] * 2 + rng.standard_normal((len(y), 4))).astype(np.float32)
    return X, y.astype(np.int64)


# ------------------------------------------------------------------- the folds
def test_stratified_folds_partition_the_rows_and_keep_class_shares():
    _, y = multi_data(counts=[50, 30, 17])
    folds = fold_indices(y, 5, seed=3)
    rows = np.concatenate(folds)
    assert sorted(rows.tolist()) == list(range(len(y)))  # disjoint, and every row held out once
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    for c, total in enumerate([50, 30, 17]):
        per_fold = [int(np.sum(y[f] == c)) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == total
    again = fold_indices(y, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))  # deterministic
    other = fold_indices(y, 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))  # the seed chooses them


def test_fold_limits_name_the_field_and_the_limit():
    _, y = multi_data(counts=[10, 10, 3])
    with pytest.raises(ValueError, match=r"cross_validation.folds must be an integer >= 2, got 1"):
        fold_indices(y, 1)
    with pytest.raises(ValueError, match=r"cross_validation.folds 24 is more than the 23 rows"):
        fold_indices(y, 24, stratify=False)
    with pytest.raises(ValueError, match=r"folds 4 is more than the 3 row\(s\) of the smallest class \(class index 2\)"):
        fold_indices(y, 4)
    assert len(fold_indices(y, 4, stratify=False)) == 4  # regression folds need only the rows


# ------------------------------------------------------------- cross_validate
def test_cross_validate_scores_each_fold_on_rows_it_never_saw():
    X, y = multi_data()
    options = dict(epochs=4, batch_size=16, optimizer=ADAM, standardize=True, seed=7)
    result = cross_validate(MULTI, X, y, folds=3, **options)
    assert result["folds"] == 3 and [m["fold"] for m in result["metrics"]] == [1, 2, 3]
    folds = fold_indices(y, 3, seed=7)
    for f, m in enumerate(result["metrics"]):  # the same model trained by hand on the other folds
        te = folds[f]
        tr = np.setdiff1d(np.arange(len(y)), te)
        net = Network.from_spec(MULTI)
        fit(net, X[tr], y[tr], **options)
        assert m["rows"] == len(te) and m["epochs"] == 4 and m["best_epoch"] is None
        assert m["accuracy"] == pytest.approx(accuracy_score(y[te], net.predict(X[te])), abs=1e-12)
        assert m["loss"] == pytest.approx(holdout_metrics(net, X[te], y[te])["loss"], rel=1e-6)
    accs = [m["accuracy"] for m in result["metrics"]]
    assert result["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert result["std"]["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    assert set(result["mean"]) == {"loss", "accuracy"}  # no auc for three classes
    assert cross_validate(MULTI, X, y, folds=3, **options) == result  # deterministic


def test_cross_validate_regression_and_early_stopping_inside_the_training_folds():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(200)).astype(np.float32)
    result = cross_validate(REG, X, y, folds=4, epochs=30, optimizer=ADAM, standardize=True,
                            validation_split=0.2, early_stopping={"patience": 2})
    assert set(result["mean"]) == {"loss", "mae", "rmse", "r2"}
    for f, m in zip(fold_indices(y, 4, stratify=False), result["metrics"]):
        assert m["rows"] == len(f) and 1 <= m["best_epoch"] <= m["epochs"] <= 30
    assert result["mean"]["r2"] > 0.8
    # the held-out R² is scikit-learn's on the fold (checked on one fold's model by hand)
    te = fold_indices(y, 4, seed=0, stratify=False)[0]
    net = Network.from_spec(REG)
    fit(net, np.delete(X, te, 0), np.delete(y, te), epochs=5, optimizer=ADAM, standardize=True)
    assert holdout_metrics(net, X[te], y[te])["r2"] == pytest.approx(
        r2_score(y[te], net.predict(X[te]).reshape(-1)), abs=1e-5)


def test_cross_validate_stops_within_one_minibatch():
    X, y = multi_data()
    polls = []

    def stop():
        polls.append(1)
        return len(polls) > 20  # inside the second fold (8 minibatches per epoch, 2 epochs per fold)

    folds_seen = []
    with pytest.raises(TrainingCancelled):
        cross_validate(MULTI, X, y, folds=3, epochs=2, batch_size=20, should_stop=stop,
                       on_fold=lambda f, k: folds_seen.append(f))
    assert len(polls) == 21 and folds_seen == [0, 1]
    with pytest.raises(ValueError, match="cross_validate does not take resume"):
        cross_validate(MULTI, X, y, folds=3, resume="x.npz")


# ------------------------------------------------------------------ val_auc
@pytest.mark.parametrize("spec", [BINARY, BINARY_SOFTMAX], ids=["sigmoid", "softmax2"])
def test_val_auc_each_epoch_matches_sklearn(spec):
    X, y = binary_data()
    Xv, yv = binary_data(120, seed=1)
    net = Network.from_spec(spec)
    history = fit(net, X, y, epochs=3, optimizer=ADAM, validation=(Xv, yv), standardize=True)
    proba = net.predict_proba(Xv)
    assert history[-1]["val_auc"] == pytest.approx(roc_auc_score(yv, proba[:, -1]), abs=1e-9)
    assert all(0.5 < h["val_auc"] <= 1.0 for h in history)


def test_val_auc_is_absent_for_multiclass_and_for_one_class_validation():
    X, y = multi_data()
    history = fit(Network.from_spec(MULTI), X, y, epochs=1, validation_split=0.25)
    assert "val_auc" not in history[-1]
    Xb, yb = binary_data()
    history = fit(Network.from_spec(BINARY), Xb, yb, epochs=1, validation=(Xb[:10], np.zeros(10, int)))
    assert "val_auc" not in history[-1]


def test_early_stopping_on_val_auc_keeps_the_best_auc_epoch():
    assert MONITORS["val_auc"].maximize and MONITORS["val_auc"].needs_validation
    X, y = binary_data(400)
    net = Network.from_spec(BINARY)
    history = fit(net, X, y, epochs=40, optimizer={"type": "adam", "learning_rate": 0.05}, validation_split=0.3,
                  standardize=True, early_stopping={"monitor": "val_auc", "patience": 3})
    best = max(history, key=lambda h: h["val_auc"])
    assert history.best_epoch == best["epoch"] and history.restored_best
    assert len(history) <= history.best_epoch + 3


def test_val_auc_monitor_without_binary_validation_says_why():
    X, y = multi_data()
    with pytest.raises(ValueError, match=r"early_stopping.monitor 'val_auc' needs binary classification .* got 3 classes"):
        fit(Network.from_spec(MULTI), X, y, validation_split=0.2, early_stopping={"monitor": "val_auc"})
    Xb, yb = binary_data()
    with pytest.raises(ValueError, match=r"lr_schedule.monitor 'val_auc' .* validation rows of one class"):
        fit(Network.from_spec(BINARY), Xb, yb, validation=(Xb[:5], np.ones(5, int)),
            lr_schedule={"type": "reduce_on_plateau", "monitor": "val_auc"})
