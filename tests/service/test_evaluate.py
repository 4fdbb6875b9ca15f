"""POST /v1/models/{id}/evaluate and the model's metrics describing the weights it serves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from tests.service.helpers import blobs, mlp_spec, post_dataset, post_network, wait_job


def _predict(client, model_id, X):
    r = client.post(f"/v1/models/{model_id}/predict", json={"inputs": np.asarray(X).tolist()})
    assert r.status_code == 200, r.text
    return r.json()


def test_evaluate_on_dataset_matches_sklearn_on_the_predictions(client, trained_model):
    mid, ds, X, y = trained_model["model_id"], trained_model["dataset"], trained_model["X"], trained_model["y"]
    r = client.post(f"/v1/models/{mid}/evaluate", json={"dataset_id": ds["id"]})
    assert r.status_code == 200, r.text
    ev = r.json()
    pred = _predict(client, mid, X)
    classes = client.get(f"/v1/models/{mid}").json()["classes"]
    proba = np.asarray(pred["probabilities"], dtype=np.float64)
    yi = np.array([classes.index(v) for v in y])
    assert ev["rows"] == len(y) and ev["task"] == "classification"
    m = ev["metrics"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred["predictions"]), abs=1e-9)
    assert m["log_loss"] == pytest.approx(skm.log_loss(yi, proba, labels=[0, 1, 2]), abs=1e-6)
    assert m["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(yi, proba, multi_class="ovr"), abs=1e-6)
    assert ev["confusion_matrix"]["labels"] == classes
    assert ev["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred["predictions"], labels=classes).tolist()
    assert [c["label"] for c in ev["per_class"]] == classes
    assert [c["support"] for c in ev["per_class"]] == [int(np.sum(y == c)) for c in classes]
    f1 = skm.f1_score(y, pred["predictions"], labels=classes, average=None)
    assert [c["f1"] for c in ev["per_class"]] == pytest.approx(f1.tolist(), abs=1e-9)


def test_evaluate_inline_records_and_inputs_agree(client, trained_model):
    mid, X, y = trained_model["model_id"], trained_model["X"][:60], trained_model["y"][:60].tolist()
    a = client.post(f"/v1/models/{mid}/evaluate", json={"inputs": X.tolist(), "targets": y})
    names = [c["name"] for c in client.get(f"/v1/models/{mid}").json()["input_schema"]]
    b = client.post(f"/v1/models/{mid}/evaluate",
                    json={"records": [dict(zip(names, row)) for row in X.tolist()], "targets": y})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert a.json()["metrics"] == b.json()["metrics"] and a.json()["rows"] == 60
    # trained without early stopping: the model reports its last epoch and no best_epoch
    m = client.get(f"/v1/models/{mid}").json()["metrics"]
    assert "best_epoch" not in m and "last_epoch_metrics" not in m
    assert m["epoch"] == 20


BAD_BODIES = [
    ({"inputs": [[0, 0, 0, 0]]}, "targets: required with inline rows (one label or value per row)"),
    ({"inputs": [[0, 0, 0, 0]], "targets": ["purple"]},
     "targets[0]: label 'purple' is not one of the model's classes"),
    ({"inputs": [[0, 0, 0, 0]], "targets": ["red", "red"]},
     "targets must be a list of one label or value per row (1 rows), got 2"),
    ({"dataset_id": "x", "inputs": [[0, 0, 0, 0]]}, "send exactly one of dataset_id or inline rows"),
    ({"dataset_id": "0" * 32, "importance": "yes"}, "importance must be true or false"),
    ({"dataset_id": "0" * 32, "n_repeats": 0}, "n_repeats must be an integer from 1 to 20, got 0"),
    ({"dataset": "x"}, "unknown field(s) ['dataset']"),
]


def test_evaluate_rejects_bad_bodies_naming_the_field_and_unknown_ids(client, trained_model):
    mid = trained_model["model_id"]
    for body, detail in BAD_BODIES:
        r = client.post(f"/v1/models/{mid}/evaluate", json=body)
        assert r.status_code == 422, (body, r.text)
        assert detail in r.json()["detail"], body
    r = client.post(f"/v1/models/{mid}/evaluate", json={"dataset_id": "0" * 32})
    assert r.status_code == 404 and "0" * 32 in r.json()["detail"]
    r = client.post(f"/v1/models/{'0' * 32}/evaluate", json={"dataset_id": trained_model["dataset"]["id"]})
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    body = b'{"dataset_id": "' + trained_model["dataset"]["id"].encode() + b'"}'
    for media in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/csv"):  # curl -d
        r = client.post(f"/v1/models/{mid}/evaluate", content=body, headers={"content-type": media})
        assert r.status_code == 415 and r.json()["detail"] == (
            f"Content-Type {media.split(';')[0]} is not supported: evaluate reads a JSON body (send application/json)")
    for media in (None, "application/json; charset=utf-8", "text/plain", "application/vnd.x+json"):  # as predict
        r = client.post(f"/v1/models/{mid}/evaluate", content=body, headers={"content-type": media} if media else {})
        assert r.status_code == 200, (media, r.text)


def test_permutation_importance_names_columns_and_finds_the_signal(client):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = np.where(X[:, 1] > 0, "yes", "no")          # only column 1 matters
    net = post_network(client, mlp_spec(2))
    ds = post_dataset(client, X.round(4), y)
    job = wait_job(client, client.post("/v1/jobs", json={
        "network_id": net["id"], "dataset_id": ds["id"], "epochs": 30,
        "optimizer": {"type": "adam", "learning_rate": 0.02}}).json()["id"])
    assert job["status"] == "succeeded", job
    body = {"dataset_id": ds["id"], "importance": True, "n_repeats": 3, "seed": 5}
    a = client.post(f"/v1/models/{job['model_id']}/evaluate", json=body).json()["importance"]
    b = client.post(f"/v1/models/{job['model_id']}/evaluate", json=body).json()["importance"]
    assert a == b                                    # seeded
    names = [c["name"] for c in client.get(f"/v1/models/{job['model_id']}").json()["input_schema"]]
    assert [c["column"] for c in a["columns"]] == names and a["metric"] == "accuracy" and a["rows"] == 300
    drops = {c["column"]: c["mean"] for c in a["columns"]}
    assert drops[names[1]] > 0.3 and abs(drops[names[0]]) < 0.05 and abs(drops[names[2]]) < 0.05
    assert all(c["std"] >= 0 for c in a["columns"])


def test_evaluate_regression_matches_sklearn(client):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)
    net = post_network(client, mlp_spec(1, loss="mse"))
    ds = post_dataset(client, X.round(4), y.round(4), task="regression")
    job = wait_job(client, client.post("/v1/jobs", json={
        "network_id": net["id"], "dataset_id": ds["id"], "epochs": 10,
        "optimizer": {"type": "adam", "learning_rate": 0.02}}).json()["id"])
    assert job["status"] == "succeeded", job
    Xt, yt = X[:50].round(4), y[:50].round(4)
    ev = client.post(f"/v1/models/{job['model_id']}/evaluate", json={"inputs": Xt.tolist(), "targets": yt.tolist()})
    assert ev.status_code == 200, ev.text
    m = ev.json()["metrics"]
    p = np.asarray(_predict(client, job["model_id"], Xt)["predictions"], dtype=np.float64).reshape(-1)
    assert m["r2"] == pytest.approx(skm.r2_score(yt, p), abs=1e-6)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(yt, p), abs=1e-6)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(yt, p), abs=1e-6)
    assert m["explained_variance"] == pytest.approx(skm.explained_variance_score(yt, p), abs=1e-6)
    assert m["residual_quantiles"]["p50"] == pytest.approx(float(np.median(yt - p)), abs=1e-6)
    one = client.post(f"/v1/models/{job['model_id']}/evaluate",
                      json={"inputs": Xt[:1].tolist(), "targets": yt[:1].tolist(), "importance": True})
    assert one.status_code == 200, one.text  # one row: R² is not defined (scikit-learn: nan with a warning)
    assert one.json()["metrics"]["r2"] is None and one.json()["metrics"]["explained_variance"] is None
    assert one.json()["metrics"]["mae"] == pytest.approx(abs(float(yt[0] - p[0])), abs=1e-5)
    assert one.json()["importance"]["baseline"] is None


def test_evaluate_integer_classes_take_integral_float_targets(client):
    X, y = blobs(n=120, d=3, k=2, seed=2)
    net = post_network(client, mlp_spec(2))
    ds = post_dataset(client, X.round(4), y)
    job = wait_job(client, client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"],
                                                         "epochs": 5}).json()["id"])
    assert job["status"] == "succeeded", job
    assert client.get(f"/v1/models/{job['model_id']}").json()["classes"] == [0, 1]
    as_int = client.post(f"/v1/models/{job['model_id']}/evaluate",
                         json={"inputs": X[:20].round(4).tolist(), "targets": y[:20].tolist()})
    as_float = client.post(f"/v1/models/{job['model_id']}/evaluate",
                           json={"inputs": X[:20].round(4).tolist(), "targets": [float(v) for v in y[:20]]})
    assert as_float.status_code == 200, as_float.text
    assert as_float.json()["metrics"] == as_int.json()["metrics"]
    bad = client.post(f"/v1/models/{job['model_id']}/evaluate", json={"inputs": X[:1].tolist(), "targets": [1.5]})
    assert bad.status_code == 422 and bad.json()["detail"] == "targets[0]: label 1.5 is not one of the model's classes [0, 1]"


def _noisy(seed):
    X, y = blobs(n=300, d=4, k=3, seed=seed)
    X = X + np.random.default_rng(seed + 10).normal(scale=4.0, size=X.shape)   # overlapping: val loss turns up
    return X.round(4), np.array(["a", "b", "c"])[y]


def test_early_stopped_model_reports_the_metrics_of_the_weights_it_serves(client):
    X, y = _noisy(0)
    Xv, yv = _noisy(1)
    net = post_network(client, mlp_spec(3, hidden=64))
    ds, val = post_dataset(client, X, y), post_dataset(client, Xv, yv, name="val")
    job = wait_job(client, client.post("/v1/jobs", json={
        "network_id": net["id"], "dataset_id": ds["id"], "validation_dataset_id": val["id"], "epochs": 200,
        "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.03},
        "early_stopping": {"monitor": "val_loss", "patience": 3}}).json()["id"])
    assert job["status"] == "succeeded", job
    m = client.get(f"/v1/models/{job['model_id']}").json()["metrics"]
    assert m["epoch"] == m["best_epoch"] < m["last_epoch_metrics"]["epoch"] == m["best_epoch"] + 3
    ev = client.post(f"/v1/models/{job['model_id']}/evaluate", json={"dataset_id": val["id"]}).json()["metrics"]
    pred = _predict(client, job["model_id"], Xv)["predictions"]
    assert m["val_accuracy"] == pytest.approx(ev["accuracy"], abs=1e-9)
    assert m["val_accuracy"] == pytest.approx(float(np.mean(np.asarray(pred) == yv)), abs=1e-9)
    assert m["val_loss"] == pytest.approx(ev["loss"], rel=1e-4)
