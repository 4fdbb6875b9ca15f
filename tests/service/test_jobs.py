"""/v1/jobs through a TestClient: one test per outcome (202, 404, 409, 422) plus the job lifecycle."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.app import create_app
from service.jobs.tables import Job
from service.settings import Settings
from tests.service.helpers import assert_detail, blobs, mlp_spec, sse_events


def _job(client, net, ds, **kw):
    body = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": 5, "batch_size": 16, **kw}
    return client.post("/v1/jobs", json=body)


# -- 202 and the lifecycle -----------------------------------------------------------------------------------
def test_create_job_returns_202_location_and_queued_job(client, blob_setup):
    net, ds = blob_setup
    r = _job(client, net, ds)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running")
    assert job["progress"]["epochs"] == 5
    assert job["params"]["optimizer"] == {"type": "adam", "learning_rate": 0.002, "beta1": 0.9,  # the job default
                                          "beta2": 0.999, "eps": 1e-08}
    assert job["params"]["standardize"] is True and job["params"]["seed"] == 0


def test_job_trains_to_success_with_metrics_every_epoch(client, blob_setup, wait_job):
    net, ds = blob_setup
    r = _job(client, net, ds, epochs=8, validation_split=0.25, optimizer={"type": "adam", "learning_rate": 0.02})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["error"] is None and job["model_id"]
    assert job["progress"] == {"epoch": 8, "epochs": 8, "fraction": 1.0, "eta_seconds": 0.0}
    assert 1 <= job["best_epoch"] <= 8
    assert job["metrics"]["epoch"] == 8 and job["metrics"]["val_accuracy"] > 0.9
    assert job["started_at"] and job["finished_at"] and job["attempt"] == 1

    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert [m["epoch"] for m in metrics["items"]] == list(range(1, 9)) and metrics["total"] == 8
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(metrics["items"][0])
    later = client.get(f"/v1/jobs/{job['id']}/metrics", params={"since_epoch": 6}).json()
    assert [m["epoch"] for m in later["items"]] == [7, 8]


def test_model_row_copies_classes(client, trained_model):
    r = client.get(f"/v1/models/{trained_model['model_id']}")
    assert r.status_code == 200, r.text
    model = r.json()
    assert model["classes"] == trained_model["dataset"]["classes"]
    assert model["task"] == "classification" and model["input_dim"] == 4


def test_same_seed_gives_same_metrics(client, blob_setup, wait_job):
    net, ds = blob_setup
    runs = []
    for _ in range(2):
        job = wait_job(client, _job(client, net, ds, epochs=4, validation_split=0.2, seed=7).json()["id"])
        items = client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
        runs.append([{k: v for k, v in m.items() if k != "seconds"} for m in items])
    assert runs[0] == runs[1]


def test_regression_job_and_validation_dataset(client, make_network, make_dataset, wait_job):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    train = make_dataset(client, X[:150], y[:150], task="regression")
    val = make_dataset(client, X[150:], y[150:], task="regression")
    net = make_network(client, mlp_spec(1, loss="mse"))
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": train["id"], "epochs": 30,
                                      "validation_dataset_id": val["id"], "batch_size": 16,
                                      "optimizer": {"type": "adam", "learning_rate": 0.01},
                                      "early_stopping": {"monitor": "val_r2", "patience": 50}})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["metrics"]["val_r2"] > 0.9


def test_validation_dataset_classes_are_remapped(client, make_network, make_dataset, wait_job):
    X, y = blobs(n=300)
    labels = np.array(["a", "b", "c"])[y]
    train = make_dataset(client, X[:240], labels[:240])
    keep = labels[240:] != "a"  # the validation set lacks class "a": its class indices differ
    val = make_dataset(client, X[240:][keep], labels[240:][keep])
    assert val["classes"] == ["b", "c"]
    net = make_network(client, mlp_spec(3))
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": train["id"], "epochs": 10,
                                      "validation_dataset_id": val["id"], "batch_size": 16,
                                      "optimizer": {"type": "adam", "learning_rate": 0.02}})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["metrics"]["val_accuracy"] > 0.9


def test_divergence_fails_the_job_with_a_message(client, make_network, make_dataset, wait_job):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(64, 2)) * 1e3
    y = X[:, 0] * 1e3
    ds = make_dataset(client, X, y, task="regression")
    net = make_network(client, mlp_spec(1, loss="mse"))
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 50,
                                      "standardize": False, "optimizer": {"type": "sgd", "learning_rate": 10.0}})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "failed" and job["model_id"] is None
    assert "diverged" in job["error"] and "learning rate" in job["error"]


def test_list_jobs_filters_by_status_and_pages(client, blob_setup, wait_job):
    net, ds = blob_setup
    ids = [_job(client, net, ds, epochs=1).json()["id"] for _ in range(3)]
    for i in ids:
        wait_job(client, i)
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert {j["id"] for j in page["items"] + rest["items"]} == set(ids)
    assert client.get("/v1/jobs", params={"status": "succeeded"}).json()["total"] == 3
    assert client.get("/v1/jobs", params={"status": "failed"}).json() == {"items": [], "total": 0}


def test_list_jobs_rejects_unknown_status(client):
    r = client.get("/v1/jobs", params={"status": "sleeping"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "status"]


def test_events_stream_one_event_per_epoch_then_end(client, blob_setup):
    net, ds = blob_setup
    job_id = _job(client, net, ds, epochs=6).json()["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()  # returns because the stream closes when the job ends
    events = sse_events(text)
    progress = [d for e, d in events if e == "progress"]  # within-epoch reports, about one a second
    assert all(0 <= d["batch"] < d["batches"] and 1 <= d["epoch"] <= 6 for d in progress), progress
    events = [(e, d) for e, d in events if e != "progress"]
    assert [e for e, _ in events] == ["epoch"] * 6 + ["end"]
    assert [d["epoch"] for _, d in events[:-1]] == [1, 2, 3, 4, 5, 6]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["model_id"]


def test_events_resume_after_last_event_id(client, blob_setup, wait_job):
    net, ds = blob_setup
    job_id = wait_job(client, _job(client, net, ds, epochs=4).json()["id"])["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "2"}) as r:
        text = r.read().decode()
    assert text.count("event: epoch") == 2 and "id: 3\n" in text and "event: end" in text


# -- cancel: 200 / 409 ---------------------------------------------------------------------------------------
def test_cancel_queued_job(tmp_path, make_network, make_dataset):
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0))  # nothing trains: the job stays queued
    with TestClient(app) as client:
        X, y = blobs()
        net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, y)
        job_id = _job(client, net, ds).json()["id"]
        r = client.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
        assert r.json()["error"] == "cancelled before it started"
        r = client.post(f"/v1/jobs/{job_id}/cancel")
        assert_detail(r, 409, f"job {job_id} is already cancelled; only queued or running jobs can be cancelled")
        # queued again to resume after its worker died (as the restart after a kill -9 leaves it): its epochs count
        again = _job(client, net, ds).json()["id"]
        with app.state.sessionmaker() as session:
            session.execute(update(Job).where(Job.id == again).values(epoch=7, attempt=1))
            session.commit()
        r = client.post(f"/v1/jobs/{again}/cancel")
        assert r.status_code == 200 and r.json()["error"] == "cancelled while queued to resume after epoch 7", r.text


def test_cancel_running_job_stops_it(client, make_network, make_dataset, wait_job):
    X, y = blobs(n=2000, d=8)
    ds = make_dataset(client, X, y)
    net = make_network(client, mlp_spec(3, hidden=64))
    job_id = _job(client, net, ds, epochs=1000, batch_size=4).json()["id"]
    job = wait_job(client, job_id, until=("running",) + ("succeeded", "failed", "cancelled"))
    assert job["status"] == "running"
    t0 = time.monotonic()
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    job = wait_job(client, job_id, timeout=10)
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert time.monotonic() - t0 < 5


def test_cancel_finished_job_is_409(client, blob_setup, wait_job):
    net, ds = blob_setup
    job = wait_job(client, _job(client, net, ds, epochs=1).json()["id"])
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert_detail(r, 409, (f"job {job['id']} is already succeeded; only queued or running jobs "
                           "can be cancelled"))


# -- 404 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("get", "/v1/jobs/nope"), ("get", "/v1/jobs/nope/metrics"),
                                         ("post", "/v1/jobs/nope/cancel"), ("get", "/v1/jobs/nope/events")])
def test_unknown_job_is_404(client, method, path):
    r = getattr(client, method)(path)
    assert r.status_code == 404
    assert r.json() == {"detail": "job nope not found"}


def test_unknown_network_is_404(client, blob_setup):
    _, ds = blob_setup
    r = client.post("/v1/jobs", json={"network_id": "missing", "dataset_id": ds["id"]})
    assert r.status_code == 404
    assert "missing" in r.json()["detail"] and "network" in r.json()["detail"]


def test_unknown_dataset_is_404(client, blob_setup):
    net, _ = blob_setup
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": "missing"})
    assert r.status_code == 404
    assert "missing" in r.json()["detail"] and "data" in r.json()["detail"]


def test_unknown_validation_dataset_is_404(client, blob_setup):
    net, ds = blob_setup
    r = _job(client, net, ds, validation_dataset_id="missing")
    assert r.status_code == 404 and "missing" in r.json()["detail"]


# -- 422 --------------------------------------------------------------------------------------------------
def test_input_dim_mismatch_is_422(client, make_network, blob_setup):
    _, ds = blob_setup
    net = make_network(client, mlp_spec(3, input_dim=5))
    r = _job(client, net, ds)
    assert_detail(r, 422, (f"network_id: the network's input_dim is 5 but data set {ds['id']} has 4 "
                           "features (n_features)"))


def test_output_units_vs_classes_is_422(client, make_network, blob_setup):
    _, ds = blob_setup
    net = make_network(client, mlp_spec(2))
    r = _job(client, net, ds)
    assert_detail(r, 422, (f"network_id: the network's output layer has 2 units but data set {ds['id']} "
                           "has 3 classes (softmax needs one unit per class)"))


def test_sigmoid_output_needs_two_classes(client, make_network, blob_setup):
    _, ds = blob_setup
    net = make_network(client, mlp_spec(1, loss="binary_cross_entropy"))
    r = _job(client, net, ds)
    assert_detail(r, 422, (f"dataset_id: binary_cross_entropy (sigmoid output) needs exactly 2 classes, "
                           f"data set {ds['id']} has 3"))


def test_binary_job_trains(client, make_network, make_dataset, wait_job):
    X, y = blobs(k=2)
    ds = make_dataset(client, X, np.array(["no", "yes"])[y])
    net = make_network(client, mlp_spec(1, loss="binary_cross_entropy"))
    job = wait_job(client, _job(client, net, ds, epochs=10, optimizer={"type": "sgd", "learning_rate": 0.1,
                                                                        "momentum": 0.9}).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["metrics"]["train_accuracy"] > 0.9


def test_regression_outputs_mismatch_is_422(client, make_network, make_dataset):
    X = np.random.default_rng(0).normal(size=(20, 3))
    ds = make_dataset(client, X, X[:, 0], task="regression")
    net = make_network(client, mlp_spec(2, loss="mse"))
    r = _job(client, net, ds)
    assert_detail(r, 422, (f"network_id: the network's output layer has 2 units but data set {ds['id']} "
                           "has 1 regression target(s) (n_outputs)"))


def test_task_mismatch_is_422(client, make_network, blob_setup):
    _, ds = blob_setup
    net = make_network(client, mlp_spec(1, loss="mse"))
    r = _job(client, net, ds)
    assert_detail(r, 422, (f"dataset_id: data set {ds['id']} is for classification but network "
                           f"{net['id']} (loss 'mse') does regression"))


def test_limits_are_422_naming_the_limit(tmp_path, make_network, make_dataset):
    app = create_app(Settings(data_dir=tmp_path / "d", workers=0, max_epochs=10, max_batch_size=8,
                              max_params=50))
    with TestClient(app) as client:
        X, y = blobs()
        ds = make_dataset(client, X, y)
        small = make_network(client, {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
                                      "loss": "cross_entropy"})
        r = _job(client, small, ds, epochs=11, batch_size=8)
        assert_detail(r, 422, "epochs: 11 is more than the limit max_epochs=10 (MLP_MAX_EPOCHS)")
        r = _job(client, small, ds, epochs=10, batch_size=9)
        assert_detail(r, 422, "batch_size: 9 is more than the limit max_batch_size=8 (MLP_MAX_BATCH_SIZE)")
        big = make_network(client, mlp_spec(3, hidden=6))  # no input_dim: counted with the data's 4 features
        r = _job(client, big, ds, epochs=10, batch_size=8)
        assert_detail(r, 422, ("network_id: with 4 input features the network has 51 parameters, more "
                               "than the limit max_params=50 (MLP_MAX_PARAMS)"))


@pytest.mark.parametrize("change,loc", [
    ({"epochs": 0}, ["body", "epochs"]),
    ({"batch_size": 0}, ["body", "batch_size"]),
    ({"validation_split": 1.0}, ["body", "validation_split"]),
    ({"optimizer": {"type": "adagrad"}}, ["body", "optimizer"]),
    ({"optimizer": {"type": "sgd", "learning_rate": -1}}, ["body", "optimizer", "sgd", "learning_rate"]),
    ({"optimizer": {"type": "adam", "beta1": 1.0}}, ["body", "optimizer", "adam", "beta1"]),
    ({"optimizer": {"type": "sgd", "beta1": 0.9}}, ["body", "optimizer", "sgd", "beta1"]),
    ({"early_stopping": {"monitor": "val_loss", "patience": 0}}, ["body", "early_stopping", "patience"]),
    ({"early_stopping": {"monitor": "loss"}}, ["body", "early_stopping", "monitor"]),
    ({"seed": -1}, ["body", "seed"]),
    ({"learning_rate": 0.1}, ["body", "learning_rate"]),
])
def test_invalid_body_is_422_naming_the_field(client, blob_setup, change, loc):
    net, ds = blob_setup
    r = _job(client, net, ds, **change)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_validation_split_and_dataset_together_is_422(client, blob_setup):
    net, ds = blob_setup
    r = _job(client, net, ds, validation_split=0.2, validation_dataset_id=ds["id"])
    assert_detail(r, 422, ("validation_dataset_id: give either validation_split or validation_dataset_id, "
                           "not both"))


def test_validation_dataset_with_other_features_is_422(client, make_dataset, blob_setup):
    net, ds = blob_setup
    X, y = blobs(d=5)
    other = make_dataset(client, X, np.array(["a", "b", "c"])[y])
    r = _job(client, net, ds, validation_dataset_id=other["id"])
    assert_detail(r, 422, (f"validation_dataset_id: data set {other['id']} has 5 features, the training "
                           "data set 4 (column(s) ['x4'] are not in the training data set)"))


def test_early_stopping_on_validation_metric_needs_validation(client, blob_setup):
    net, ds = blob_setup
    r = _job(client, net, ds, early_stopping={"monitor": "val_loss"})
    assert_detail(r, 422, ("early_stopping.monitor: 'val_loss' needs validation data (validation_split > 0 "
                           "or validation_dataset_id)"))


def test_early_stopping_monitor_must_fit_the_task(client, blob_setup):
    net, ds = blob_setup
    r = _job(client, net, ds, early_stopping={"monitor": "val_r2"}, validation_split=0.2)
    assert_detail(r, 422, ("early_stopping.monitor: 'val_r2' is not available for classification; use one "
                           "of train_loss, val_loss, train_accuracy, val_accuracy"))


def test_early_stopping_stops_and_keeps_best_epoch(client, blob_setup, wait_job):
    net, ds = blob_setup
    job = wait_job(client, _job(client, net, ds, epochs=200, validation_split=0.25,
                                optimizer={"type": "adam", "learning_rate": 0.05},
                                early_stopping={"monitor": "val_loss", "patience": 3}).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"]["epoch"] < 200
    assert job["best_epoch"] == job["progress"]["epoch"] - 3


def test_openapi_shows_optimizer_union(client):
    schema = client.get("/openapi.json").json()
    comps = schema["components"]["schemas"]
    assert {"SGDOptimizer", "AdamOptimizer", "JobCreate", "JobRead"} <= set(comps)
    opt = comps["JobCreate"]["properties"]["optimizer"]
    assert opt["discriminator"]["propertyName"] == "type"


# -- the queue and its fence (service level) ------------------------------------------------------------------
def test_stale_attempt_cannot_write(tmp_path, make_network, make_dataset):
    from service.jobs import service as jobs_service

    app = create_app(Settings(data_dir=tmp_path / "d", workers=0))
    with TestClient(app) as client:
        X, y = blobs()
        net, ds = make_network(client, mlp_spec(3)), make_dataset(client, X, y)
        job_id = _job(client, net, ds).json()["id"]
        Session = app.state.sessionmaker
        with Session() as s:
            assert jobs_service.claim_next(s, worker="w1") == (job_id, 1)
            assert jobs_service.claim_next(s, worker="w2") is None  # nothing else queued
            assert jobs_service.record_epochs(s, job_id=job_id, attempt=1, owner="default",
                                              history=[{"epoch": 1, "train_loss": 1.0}], best_epoch=1)
            assert jobs_service.requeue_interrupted(s) == [job_id]  # a restart: back to the queue
            assert jobs_service.claim_next(s, worker="w2") == (job_id, 2)
            # The first worker is fenced out of every write.
            assert not jobs_service.record_epochs(s, job_id=job_id, attempt=1, owner="default",
                                                  history=[{"epoch": 2, "train_loss": 0.5}], best_epoch=2)
            assert not jobs_service.finish(s, job_id=job_id, attempt=1, status="failed", error="stale")
            assert jobs_service.should_stop(s, job_id=job_id, attempt=1) == "lost"
            assert jobs_service.should_stop(s, job_id=job_id, attempt=2) is None
            # Epochs are recorded once, whoever reports them.
            assert jobs_service.record_epochs(s, job_id=job_id, attempt=2, owner="default",
                                              history=[{"epoch": 1, "train_loss": 9.0},
                                                       {"epoch": 2, "train_loss": 0.4}], best_epoch=2)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "running" and job["attempt"] == 2 and job["progress"]["epoch"] == 2
        items = client.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
        assert [(m["epoch"], m["train_loss"]) for m in items] == [(1, 1.0), (2, 0.4)]
