"""Training options of POST /v1/jobs (issue 14): schedules, clipping, adamw/rmsprop, l1, class and
sample weights, huber and batch_norm through the API; 422s name the field."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.conftest import blobs, mlp_spec


def upload_csv(client, text: str, **fields) -> dict:
    r = client.post("/v1/datasets", files={"file": ("data.csv", text.encode(), "text/csv")}, data=fields)
    assert r.status_code == 201, r.text
    return r.json()


def _job(client, net, ds, **kw):
    body = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": 4, "batch_size": 16, **kw}
    return client.post("/v1/jobs", json=body)


def test_every_option_trains_and_lr_is_in_the_metrics(client, blob_setup, wait_job):
    net, ds = blob_setup
    r = _job(client, net, ds, validation_split=0.2, clip_norm=1.0, l1=1e-4, class_weight={"a": 2.0, "c": 0.5},
             optimizer={"type": "adamw", "learning_rate": 0.02, "weight_decay": 0.01},
             lr_schedule={"type": "cosine", "warmup_epochs": 1})
    assert r.status_code == 202, r.text
    assert r.json()["params"]["lr_schedule"] == {"type": "cosine", "warmup_epochs": 1, "t_max": None,
                                                 "min_lr": 0.0}
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    items = client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert [round(m["lr"], 6) for m in items] == [0.01, 0.02, 0.015, 0.005]  # warm-up, then cosine over 3
    assert job["metrics"]["val_accuracy"] > 0.8


def test_schedule_alias_rmsprop_and_plateau(client, blob_setup, wait_job):
    net, ds = blob_setup
    r = _job(client, net, ds, validation_split=0.2, optimizer={"type": "rmsprop", "learning_rate": 0.01},
             schedule={"type": "reduce_on_plateau", "monitor": "val_loss", "patience": 1, "factor": 0.5,
                       "min_delta": 100})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    lrs = [m["lr"] for m in client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]]
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.0025])


def test_balanced_class_weight_and_batch_norm_huber_networks(client, make_network, make_dataset, wait_job):
    X, y = blobs()
    ds = make_dataset(client, X, np.array(["a", "b", "c"])[y])
    spec = mlp_spec(3)
    spec["layers"].insert(1, {"type": "batch_norm", "momentum": 0.2})
    net = make_network(client, spec)
    assert net["layers"][1] == {"type": "batch_norm", "momentum": 0.2, "eps": 1e-5}
    job = wait_job(client, _job(client, net, ds, class_weight="balanced").json()["id"])
    assert job["status"] == "succeeded", job
    p = client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": X[:1].tolist()})
    assert p.status_code == 200 and p.json()["predictions"][0] in ("a", "b", "c")
    r = client.post("/v1/networks", json={"layers": [{"type": "dense", "units": 1}], "loss": "huber",
                                           "huber_delta": 0.5})
    assert r.status_code == 201 and r.json()["huber_delta"] == 0.5 and r.json()["loss"] == "huber"


def test_sample_weight_column_is_a_weight_not_a_feature(client, wait_job):
    rng = np.random.default_rng(0)
    rows = ["x1,x2,w,label"] + [f"{a:.3f},{b:.3f},{1 + i % 3},{'p' if a + b > 0 else 'n'}"
                                 for i, (a, b) in enumerate(rng.standard_normal((120, 2)))]
    ds = upload_csv(client, "\n".join(rows) + "\n", target="label")
    net = client.post("/v1/networks", json=mlp_spec(2)).json()
    r = _job(client, net, ds, sample_weight_column="w", epochs=10,
             optimizer={"type": "adam", "learning_rate": 0.02})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert [c["name"] for c in model["input_schema"]] == ["x1", "x2"]
    assert model["input_dim"] == 2  # the weight column is not an input
    p = client.post(f"/v1/models/{job['model_id']}/predict", json={"records": [{"x1": 2.0, "x2": 1.0}]})
    assert p.status_code == 200 and p.json()["predictions"] == ["p"]
    bad = _job(client, net, ds, sample_weight_column="nope")
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith(f"sample_weight_column: data set {ds['id']} has no column 'nope'")


@pytest.mark.parametrize("body, field, words", [
    ({"clip_norm": 0}, "clip_norm", "greater than 0"),
    ({"l1": -1}, "l1", "greater than or equal to 0"),
    ({"lr_schedule": {"type": "warm"}}, "lr_schedule", "step"),
    ({"lr_schedule": {"type": "step", "gamma": 2}}, "gamma", "less than or equal to 1"),
    ({"lr_schedule": {"type": "cosine", "warmup_epochs": -1}}, "warmup_epochs", "greater than or equal to 0"),
    ({"optimizer": {"type": "rmsprop", "rho": 1}}, "rho", "less than 1"),
    ({"optimizer": {"type": "adamw", "weight_decay": -0.1}}, "weight_decay", "greater than or equal to 0"),
    ({"class_weight": "even"}, "class_weight", "balanced"),
    ({"class_weight": {"a": -1}}, "class_weight", "greater than or equal to 0"),
    ({"optimizer": {"type": "adam", "learning_rate": 0.001}, "lr_schedule": {"type": "cosine", "min_lr": 0.01}},
     "lr_schedule.min_lr", "0.01 is above optimizer.learning_rate 0.001"),
    ({"optimizer": {"type": "sgd"}, "schedule": {"type": "reduce_on_plateau", "min_lr": 0.5}},
     "lr_schedule.min_lr", "0.5 is above optimizer.learning_rate 0.01"),
    ({"lr_schedule": {"type": "step"}, "schedule": {"type": "cosine"}}, "lr_schedule",
     "give lr_schedule or its alias schedule, not both"),
])
def test_schema_422s_name_the_field(client, blob_setup, body, field, words):
    net, ds = blob_setup
    r = _job(client, net, ds, **body)
    assert r.status_code == 422, r.text
    detail = str(r.json()["detail"])
    assert field in detail and words in detail, detail


@pytest.mark.parametrize("body, detail", [
    ({"class_weight": {"z": 2.0}}, "class_weight: 'z' is not a class of the data set; classes: a, b, c"),
    ({"class_weight": {"a": 0, "b": 0, "c": 0}}, "class_weight: every class has weight 0, so nothing would be "
                                                 "learned; give at least one class a weight > 0"),
    ({"lr_schedule": {"type": "reduce_on_plateau"}},
     "lr_schedule.monitor: 'val_loss' needs validation data (validation_split > 0 or validation_dataset_id)"),
    ({"lr_schedule": {"type": "reduce_on_plateau", "monitor": "val_r2"}, "validation_split": 0.2},
     "lr_schedule.monitor: 'val_r2' is not available for classification; use one of train_loss, val_loss, "
     "train_accuracy, val_accuracy"),
])
def test_domain_422s_name_the_field(client, blob_setup, body, detail):
    net, ds = blob_setup
    r = _job(client, net, ds, **body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail


def test_a_long_unknown_id_in_a_body_is_echoed_cut(client, blob_setup):
    """A 1 MB network_id is a 404 whose detail echoes at most 200 characters of it, not the megabyte."""
    net, ds = blob_setup
    r = client.post("/v1/jobs", json={"network_id": "a" * 1_000_000, "dataset_id": ds["id"]})
    assert r.status_code == 404
    assert r.json()["detail"] == f"network {'a' * 200}... not found"


def test_class_weight_on_regression_is_a_422(client, make_network, make_dataset):
    X, _ = blobs()
    ds = make_dataset(client, X, X[:, 0] * 2.0, task="regression")
    net = make_network(client, mlp_spec(1, loss="mse"))
    r = _job(client, net, ds, class_weight="balanced")
    assert r.status_code == 422
    assert r.json()["detail"] == (f"class_weight: data set {ds['id']} is for regression; class weights are for "
                                  "classification (use sample_weight_column)")
