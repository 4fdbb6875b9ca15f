"""Sweeps after the second new-user attack on issue 17: the metric's direction, metric and validation data checked
at creation as jobs check them, reproducible Hyperband, honest pruned trials, stream caps, list filters."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

import core
from service.app import create_app
from service.settings import Settings
from tests.service.test_sweeps import _dataset, _wait


def _upload(c, X, y, task: str | None = None) -> str:
    body = {"name": "d", "X": np.asarray(X).tolist(), "y": list(y)}
    if task:
        body["task"] = task
    r = c.post("/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def idle(tmp_path):
    """A server without workers (trials stay queued): nothing here needs a trial to run."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        yield c


def _sweep(c, **body):
    return c.post("/v1/sweeps", json={"max_trials": 2, "space": {"epochs": 2}, **body})


# -- 1. the default direction follows the metric -------------------------------------------------------------
@pytest.mark.parametrize("metric", list(core.MONITORS))
def test_the_default_direction_follows_the_metric(idle, metric):
    c = idle
    X, y = load_breast_cancer(return_X_y=True)
    task = "classification" if "classification" in core.MONITORS[metric].tasks else "regression"
    ds = _upload(c, X[:80], y[:80].tolist() if task == "classification" else (y[:80] * 1.5).tolist(), task)
    r = _sweep(c, dataset_id=ds, metric=metric)
    assert r.status_code == 202, r.text
    want = "maximize" if metric in ("train_accuracy", "val_accuracy", "val_auc", "val_r2") else "minimize"
    assert r.json()["direction"] == want
    assert r.json()["request"]["direction"] == want


def test_an_explicit_direction_against_the_metric_is_kept(idle):
    c = idle
    X, y = load_breast_cancer(return_X_y=True)
    ds = _upload(c, X[:80], y[:80].tolist())
    r = _sweep(c, dataset_id=ds, metric="val_auc", direction="minimize")
    assert r.status_code == 202 and r.json()["direction"] == "minimize"


# -- 4. a metric no trial can compute -------------------------------------------------------------------------
def test_val_auc_on_a_multiclass_data_set_is_a_422(idle):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = _sweep(c, dataset_id=ds, metric="val_auc")
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"metric: 'val_auc' is for binary classification; data set {ds} has 3 classes"
    r = _sweep(c, dataset_id=ds, metric="val_mae")
    assert r.status_code == 422
    assert r.json()["detail"] == ("metric: 'val_mae' is not available for classification; use one of train_loss, "
                                  "val_loss, train_accuracy, val_accuracy")   # val_auc no longer offered
    assert c.get("/v1/sweeps").json()["total"] == 0


def test_val_auc_needs_both_classes_in_the_held_out_rows(idle):
    c = idle
    y = [0] * 95 + [1] * 5
    ds = _upload(c, np.arange(200.0).reshape(100, 2), y)
    r = _sweep(c, dataset_id=ds, metric="val_auc", validation_split=0.02, seed=0)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("metric: 'val_auc' needs both classes among the validation rows, but the "
                                         "2 row(s) that validation_split=0.02 holds out with seed=0 are all ")


# -- 5. a validation data set no trial can use ---------------------------------------------------------------
def test_a_validation_data_set_no_trial_can_use_is_a_422(idle):
    c = idle
    X, y = load_iris(return_X_y=True)
    iris = _upload(c, X, y.tolist())
    Xw, yw = load_wine(return_X_y=True)
    wine = _upload(c, Xw, yw.tolist())
    reg = _upload(c, X, (X[:, 0] * 2).tolist(), "regression")
    letters = _upload(c, X[:30], ["a", "b", "c"] * 10)
    r = _sweep(c, dataset_id=iris, validation_dataset_id=wine)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"validation_dataset_id: data set {wine} has 13 features, the training "
                                         "data set 4")
    r = _sweep(c, dataset_id=iris, validation_dataset_id=reg)
    assert r.status_code == 422
    assert r.json()["detail"] == (f"validation_dataset_id: data set {reg} is for regression, the training data set "
                                  "for classification")
    r = _sweep(c, dataset_id=iris, validation_dataset_id=letters)
    assert r.status_code == 422
    assert r.json()["detail"] == (f"validation_dataset_id: classes ['a', 'b', 'c'] of data set {letters} do not "
                                  "occur in the training data set")
    assert c.get("/v1/sweeps").json()["total"] == 0


# -- 7. validation_split 0 as in jobs -----------------------------------------------------------------------
def test_validation_split_zero_means_none_as_in_jobs(idle):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    val = _upload(c, X[::3], y[::3].tolist())
    r = _sweep(c, dataset_id=ds, validation_dataset_id=val, validation_split=0)
    assert r.status_code == 202, r.text
    assert r.json()["request"]["validation_split"] == 0
    r = _sweep(c, dataset_id=ds, validation_split=0, metric="train_loss")
    assert r.status_code == 202, r.text
    r = _sweep(c, dataset_id=ds, validation_split=0)
    assert r.status_code == 422
    assert r.json()["detail"] == ("metric: 'val_accuracy' needs validation data (validation_split > 0 or "
                                  "validation_dataset_id)")
    r = _sweep(c, dataset_id=ds)
    assert r.json()["request"]["validation_split"] == 0.2
    r = _sweep(c, dataset_id=ds, validation_split=0.999)
    assert r.status_code == 422
    assert r.json()["detail"] == "validation_split: 0.999 of 150 rows leaves no rows to train on"
