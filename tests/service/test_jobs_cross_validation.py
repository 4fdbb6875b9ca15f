"""Jobs with cross_validation (k fold models, then the final model) and val_auc through the API."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

import core
from service.executor.worker import fit_options
from tests.service.helpers import blobs, mlp_spec, wait_job

BODY = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.01}, "seed": 5}


def binary(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping classes (one third positive), so AUC is neither 0.5 nor 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).round(4)
    y = (X[:, 0] + rng.normal(size=n) > 0.5).astype(int)
    return X, y


def test_cross_validation_reports_folds_then_trains_the_final_model(client, make_network, make_dataset):
    X, y = binary()
    net = make_network(client, mlp_spec(1, loss="binary_cross_entropy"))
    ds = make_dataset(client, X, np.array(["no", "yes"])[y])
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"],
                                      "cross_validation": {"folds": 3}, **BODY})
    assert r.status_code == 202, r.text
    assert r.json()["cross_validation"] is None and r.json()["params"]["cross_validation"] == {"folds": 3}
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    cv = job["cross_validation"]
    assert cv["folds"] == 3 and [m["fold"] for m in cv["metrics"]] == [1, 2, 3]
    assert sum(m["rows"] for m in cv["metrics"]) == len(y) and {m["epochs"] for m in cv["metrics"]} == {3}
    assert set(cv["mean"]) == set(cv["std"]) == {"loss", "accuracy", "auc"}
    aucs = [m["auc"] for m in cv["metrics"]]
    assert cv["mean"]["auc"] == pytest.approx(np.mean(aucs)) and cv["std"]["auc"] == pytest.approx(np.std(aucs, ddof=1))
    # the same figures as core.cross_validate with the job's options (the folds are seeded and stratified)
    dataset = SimpleNamespace(columns=None, feature_names=None, n_features=4, classes=["no", "yes"])
    ref = core.cross_validate(mlp_spec(1, loss="binary_cross_entropy"), X.astype(np.float32), y, folds=3,
                              **fit_options(job["params"], dataset))
    for got, want in zip(cv["metrics"], ref["metrics"]):
        assert got.keys() == want.keys()
        for k in got:
            assert got[k] == (want[k] if want[k] is None else pytest.approx(want[k], rel=1e-6)), k
    # then the final model on all rows: the job's epochs as without cross-validation, and the model carries the folds
    items = client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert [m["epoch"] for m in items] == [1, 2, 3]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["metrics"]["cross_validation"] == cv
    assert client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": X[:2].tolist()}).status_code == 200


@pytest.mark.parametrize("body, words", [
    ({"cross_validation": {"folds": 1}}, "greater than or equal to 2"),
    ({"cross_validation": {"folds": 21}}, "less than or equal to 20"),
    ({"cross_validation": {"folds": 3, "shuffle": True}}, "Extra inputs are not permitted"),
])
def test_schema_422s_name_cross_validation_folds(client, make_network, make_dataset, body, words):
    X, y = blobs(30)
    net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], **body})
    assert r.status_code == 422, r.text
    detail = str(r.json()["detail"])
    assert "cross_validation" in detail and words in detail, detail


def test_domain_422s_name_the_rows_and_the_smallest_class(client, make_network, make_dataset):
    X, y = blobs(30)
    labels = np.array(["a", "b", "c"])[y]
    labels[labels == "c"] = np.array(["c"] * 3 + ["a"] * 7)  # class 'c' keeps 3 rows
    net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, labels)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "cross_validation": {"folds": 4}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("cross_validation.folds: 4 is more than the 3 row(s) of the smallest class ('c'); "
                                  "stratified folds need every class in every fold")
    Xr = np.arange(12.0).reshape(6, 2)
    reg_net = make_network(client, mlp_spec(1, loss="mse"))
    reg = make_dataset(client, Xr, Xr.sum(1), task="regression")
    r = client.post("/v1/jobs", json={"network_id": reg_net["id"], "dataset_id": reg["id"],
                                      "cross_validation": {"folds": 7}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"cross_validation.folds: 7 is more than the 6 rows of data set {reg['id']}"


def test_val_auc_each_epoch_and_early_stopping_on_it(client, make_network, make_dataset):
    X, y = binary(400)
    net = make_network(client, mlp_spec(2))
    ds = make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "validation_split": 0.3,
                                      "early_stopping": {"monitor": "val_auc", "patience": 2}, **dict(BODY, epochs=30)})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    items = client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert all(0.5 < m["val_auc"] <= 1 for m in items)
    assert job["best_epoch"] == max(items, key=lambda m: m["val_auc"])["epoch"]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["metrics"]["best_epoch"] == job["best_epoch"]
    assert model["metrics"]["val_auc"] == items[job["best_epoch"] - 1]["val_auc"]


@pytest.mark.parametrize("body, detail", [
    ({"validation_split": 0.2, "early_stopping": {"monitor": "val_auc"}},
     "early_stopping.monitor: 'val_auc' is for binary classification; data set {ds} has 3 classes"),
    ({"validation_split": 0.2, "lr_schedule": {"type": "reduce_on_plateau", "monitor": "val_auc"}},
     "lr_schedule.monitor: 'val_auc' is for binary classification; data set {ds} has 3 classes"),
])
def test_val_auc_on_multiclass_is_a_422(client, make_network, make_dataset, body, detail):
    X, y = blobs(60)
    net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], **body})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail.format(ds=ds["id"])


def test_val_auc_needs_validation_rows(client, make_network, make_dataset):
    X, y = binary(60)
    net, ds = make_network(client, mlp_spec(2)), make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"],
                                      "early_stopping": {"monitor": "val_auc"}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("early_stopping.monitor: 'val_auc' needs validation data (validation_split > 0 "
                                  "or validation_dataset_id)")


def test_cancel_during_the_folds_stops_within_a_minibatch(client, make_network, make_dataset):
    X, y = blobs(6000, d=16)
    net = make_network(client, mlp_spec(3, hidden=64))
    ds = make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 50, "batch_size": 4,
                                      "cross_validation": {"folds": 5}})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["progress"].get("fold") and job["progress"]["fraction"] > 0:
            break
        assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.05)
    progress = job["progress"]
    assert progress["folds"] == 5 and progress["fold"] == 1 and 0 < progress["fraction"] < 1 / 6
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = wait_job(client, job_id, timeout=10)
    assert job["status"] == "cancelled" and job["cross_validation"] is None and job["model_id"] is None
    assert progress["fraction"] <= job["progress"]["fraction"] < 1 / 6   # how far it got, not back to 0


def _poll(http, job_id: str, done, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if done(job) or job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_restarts_during_the_folds_and_the_final_model_end_as_an_uninterrupted_job(live_server):
    """SIGTERM in fold 2: the folds run again from the start (seeded: the same figures). kill -9 in the final
    model: the recorded folds are kept and the final model resumes from its checkpoint. Both end with the
    cross-validation and the weights of a job that was never interrupted."""
    srv = live_server(workers=1)
    X, y = blobs(4000, d=16, seed=5)
    body = {"epochs": 20, "batch_size": 8, "seed": 3, "cross_validation": {"folds": 3}}   # ~0.3 s a fold
    with srv.client() as http:
        ds = http.post("/v1/datasets", json={"name": "blobs", "X": X.tolist(), "y": y.tolist()}).json()
        net = http.post("/v1/networks", json=mlp_spec(3, hidden=32)).json()
        body.update(network_id=net["id"], dataset_id=ds["id"])
        job_id = http.post("/v1/jobs", json=body).json()["id"]
        job = _poll(http, job_id, lambda j: (j["progress"].get("fold") or 0) >= 2)
        assert job["status"] == "running" and job["cross_validation"] is None, job
    srv.stop()  # the worker stops within a minibatch and hands the job back
    srv.start()
    with srv.client() as http:
        job = _poll(http, job_id, lambda j: j["progress"]["epoch"] >= 2)
        assert job["status"] == "running" and job["cross_validation"]["folds"] == 3, job
    srv.kill9()
    srv.start()
    with srv.client() as http:
        job = _poll(http, job_id, lambda j: False)
        assert job["status"] == "succeeded" and job["attempt"] == 3, job
        # attempt 1 stopped in fold 2, attempt 2 ran the folds again and recorded them, attempt 3 kept them
        assert srv.log().count(f"job {job_id}: 3-fold cross-validation done") == 1
        assert f"job {job_id}: resuming after epoch" in srv.log()
        ref = _poll(http, http.post("/v1/jobs", json=body).json()["id"], lambda j: False)
        assert ref["status"] == "succeeded" and ref["attempt"] == 1
        assert job["cross_validation"] == ref["cross_validation"]
        rows = X[:50].tolist()
        p1 = http.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": rows}).json()
        p2 = http.post(f"/v1/models/{ref['model_id']}/predict", json={"inputs": rows}).json()
        assert p1 == p2


def test_best_epoch_without_early_stopping_is_the_monitors_pick_and_the_model_has_none(client, make_network,
                                                                                       make_dataset):
    """Documented choice (issue 14): the job keeps ``best_epoch`` (the epoch val_loss liked best) although the weights
    were not restored; the model, which serves the last epoch's weights, carries no best_epoch."""
    X, y = binary(200)
    net, ds = make_network(client, mlp_spec(2)), make_dataset(client, X, y)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "validation_split": 0.3,
                                      **dict(BODY, epochs=8, optimizer={"type": "adam", "learning_rate": 0.05})})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    items = client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert job["best_epoch"] == min(items, key=lambda m: m["val_loss"])["epoch"]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert "best_epoch" not in model["metrics"] and model["metrics"]["epoch"] == 8


def _rare_positive(n: int = 60, seed: int = 7, validation_split: float = 0.1):
    """Binary rows with 3 positives, none of them among the rows validation_split holds out with ``seed``."""
    va = set(core.validation_indices(n, validation_split, seed)[1].tolist())
    pos = [i for i in range(n) if i not in va][:3]
    X = np.random.default_rng(0).normal(size=(n, 3)).round(3)
    y = np.zeros(n, dtype=int)
    y[pos] = 1
    return X, y


@pytest.mark.parametrize("extra, field", [
    ({"early_stopping": {"monitor": "val_auc"}}, "early_stopping.monitor"),
    ({"lr_schedule": {"type": "reduce_on_plateau", "monitor": "val_auc"}}, "lr_schedule.monitor"),
])
def test_val_auc_with_a_one_class_validation_split_is_a_422_not_a_failed_job(client, make_network, make_dataset,
                                                                             extra, field):
    X, y = _rare_positive()
    net, ds = make_network(client, mlp_spec(2)), make_dataset(client, X, np.array(["no", "yes"])[y])
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "validation_split": 0.1,
                                      **dict(BODY, seed=7), **extra})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        f"{field}: 'val_auc' needs both classes among the validation rows, but the 6 row(s) that "
        "validation_split=0.1 holds out with seed=7 are all 'no'; use a larger validation_split, another seed, "
        "a validation_dataset_id, or monitor 'val_loss'")
    assert client.get("/v1/jobs").json()["total"] == 0


def test_validation_indices_are_the_rows_fit_validates_on():
    train, val = core.validation_indices(50, 0.2, 3)
    assert val.shape == (10,) and train.shape == (40,)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(50))
    with pytest.raises(ValueError, match="leaves no training rows of 1"):
        core.validation_indices(1, 0.5, 0)
