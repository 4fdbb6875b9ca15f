"""core.metrics against sklearn.metrics on random data (ties included), to 1e-9."""
import numpy as np
import pytest
from sklearn import metrics as skm

from core import metrics


def _proba(rng, n, k, ties=False):
    p = rng.random((n, k)) + 0.01
    if ties:
        p = np.round(p * 4) / 4 + 0.01   # few distinct values: many tied scores
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_figures_match_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = _proba(rng, 300, 2, ties)
    rep = metrics.classification_report(y, p)
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)), abs=1e-9)
    assert rep["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-9)
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p[:, 1]), abs=1e-9)
    assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(y, p[:, 1]), abs=1e-9)
    assert rep["brier_score"] == pytest.approx(skm.brier_score_loss(y, p[:, 1]), abs=1e-9)
    np.testing.assert_array_equal(rep["confusion_matrix"], skm.confusion_matrix(y, p.argmax(1), labels=[0, 1]))
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p.argmax(1), labels=[0, 1], zero_division=0)
    for got, want in zip((rep["per_class"][k] for k in ("precision", "recall", "f1", "support")), (pr, rc, f1, sup)):
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k,seed", [(3, 0), (5, 1), (4, 2)])
def test_multiclass_figures_match_sklearn(k, seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 400)
    p = _proba(rng, 400, k, ties)
    labels = list(range(k))
    rep = metrics.classification_report(y, p)
    assert rep["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=labels), abs=1e-9)
    assert rep["roc_auc_ovr_macro"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-9)
    assert rep["roc_auc_ovr_weighted"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="weighted"), abs=1e-9)
    onehot = np.eye(k)[y]
    assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(onehot, p, average="macro"), abs=1e-9)
    assert rep["brier_score"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)), abs=1e-9)
    assert rep["brier_score"] == pytest.approx(skm.brier_score_loss(y, p, labels=labels), abs=1e-9)
    np.testing.assert_array_equal(rep["confusion_matrix"], skm.confusion_matrix(y, p.argmax(1), labels=labels))
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p.argmax(1), labels=labels, zero_division=0)
    np.testing.assert_allclose(rep["per_class"]["precision"], pr, atol=1e-9, rtol=0)
    np.testing.assert_allclose(rep["per_class"]["recall"], rc, atol=1e-9, rtol=0)
    np.testing.assert_allclose(rep["per_class"]["f1"], f1, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(rep["per_class"]["support"], sup)


@pytest.mark.parametrize("m,seed", [(1, 0), (1, 1), (3, 2)])
def test_regression_figures_match_sklearn(m, seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(250, m))
    q = t + rng.normal(scale=0.5, size=(250, m)) + 0.1
    if m == 1:
        t, q = t[:, 0], q[:, 0]
    rep = metrics.regression_report(t, q)
    assert rep["rmse"] == pytest.approx(skm.root_mean_squared_error(t, q), abs=1e-9)
    assert rep["mse"] == pytest.approx(skm.mean_squared_error(t, q), abs=1e-9)
    assert rep["mae"] == pytest.approx(skm.mean_absolute_error(t, q), abs=1e-9)
    assert rep["r2"] == pytest.approx(skm.r2_score(t, q), abs=1e-9)
    assert rep["explained_variance"] == pytest.approx(skm.explained_variance_score(t, q), abs=1e-9)
    assert rep["residual_quantiles"]["p50"] == pytest.approx(float(np.median(t - q)), abs=1e-9)
    assert rep["residual_quantiles"]["p0"] == pytest.approx(float(np.min(t - q)), abs=1e-9)


def test_regression_r2_of_one_row_is_nan_as_in_sklearn():
    rep = metrics.regression_report(np.array([2.0]), np.array([2.5]))
    assert np.isnan(rep["r2"]) and np.isnan(rep["explained_variance"])
    assert rep["mae"] == 0.5 and rep["mse"] == 0.25
    with pytest.warns(Warning, match="less than two samples"):
        assert np.isnan(skm.r2_score([2.0], [2.5]))
