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
from service.sweeps.schemas import SweepCreate
from service.sweeps.search import grid_space, study, suggest
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
    assert r.json()["detail"].endswith("or metric 'val_loss'")  # the sweep's field, not a job's monitor


@pytest.mark.parametrize("field, message", [
    ("epochs", "epochs is set in space.epochs (a fixed value or the values to search), not in "
               "training"),
    ("batch_size", "batch_size is set in space.batch_size (a fixed value or the values to "
                   "search), not in training"),
    ("optimizer", "optimizer is set in space.optimizer and space.learning_rate (a fixed value or "
                  "the values to search), not in training"),
    ("learning_rate", "learning_rate is set in space.learning_rate (a fixed value or the "
                      "values to search), not in training"),
    ("seed", "seed is a field of the sweep body itself (next to space and training), not of training"),
    ("validation_split", "validation_split is a field of the sweep body itself (next to "
                         "space and training), not of training"),
])
def test_a_job_field_given_in_training_says_where_it_goes(idle, field, message):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    value = {"type": "sgd"} if field == "optimizer" else 0.1 if field in ("learning_rate", "validation_split") else 5
    r = _sweep(c, dataset_id=ds, training={field: value})
    assert r.status_code == 422, r.text
    assert [(e["loc"], e["msg"]) for e in r.json()["detail"]] == [(["body", "training"], message)]


def test_val_auc_needs_both_classes_in_the_validation_data_set(idle):
    """A one-class validation data set was accepted for val_auc: the sweep 'succeeded' with a complete trial of no
    value and no best. A 422 naming metric (and a job's early_stopping.monitor), as for a held-out split."""
    c = idle
    X, y = load_breast_cancer(return_X_y=True)
    ds = _upload(c, X[:80], y[:80].tolist())
    ones = np.flatnonzero(y == 1)[:30]
    val = _upload(c, X[ones], y[ones].tolist())
    r = _sweep(c, dataset_id=ds, metric="val_auc", validation_dataset_id=val)
    assert r.status_code == 422 and r.json()["detail"] == (
        f"metric: 'val_auc' needs both classes among the validation rows, but validation data set {val} holds only 1; "
        "use a validation data set with both classes, a validation_split, or metric 'val_loss'"), r.text
    net = c.post("/v1/networks", json={"layers": [{"type": "dense", "units": 2, "activation": "softmax"}],
                                       "loss": "cross_entropy"}).json()["id"]
    r = c.post("/v1/jobs", json={"network_id": net, "dataset_id": ds, "validation_dataset_id": val, "epochs": 2,
                                 "early_stopping": {"monitor": "val_auc", "patience": 2}})
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "early_stopping.monitor: 'val_auc' needs both classes among the validation rows, but validation data set "), \
        r.text
    both = np.r_[ones[:10], np.flatnonzero(y == 0)[:10]]
    r = _sweep(c, dataset_id=ds, metric="val_auc", validation_dataset_id=_upload(c, X[both], y[both].tolist()))
    assert r.status_code == 202, r.text


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


# -- 2, 3. Hyperband reproducible; a pruned trial shows its job's outcome ------------------------------------------
HYPERBAND = {"strategy": "tpe", "seed": 5, "max_trials": 10, "parallelism": 1, "pruner": "hyperband",
             "space": {"hidden_layers": 1, "units": [16, 32], "learning_rate": {"low": 1e-5, "high": 1e-1, "log": True},
                       "epochs": 9, "batch_size": 16}}


def test_two_identical_hyperband_sweeps_prune_the_same_trials_at_the_same_epochs(tmp_path):
    """Optuna's Hyperband picks a trial's bracket from a hash of the study's name and the trial's number: the study
    is named from the seed, not from the sweep's random id, so two sweeps of one request prune alike."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 200)
        runs = []
        for _ in range(2):
            r = c.post("/v1/sweeps", json={"dataset_id": ds, **HYPERBAND})
            assert r.status_code == 202, r.text
            s = _wait(c, r.json()["id"], timeout=180)
            assert s["status"] == "succeeded", s
            runs.append(s)
        outcome = [[(t["number"], t["status"], t["epoch"], t["value"], t["rank"]) for t in s["trials"]]
                   for s in runs]
        assert outcome[0] == outcome[1]
        assert runs[0]["counts"] == runs[1]["counts"]
        assert runs[0]["counts"].get("pruned"), runs[0]["counts"]  # the comparison covers prune decisions
        for t in runs[0]["trials"]:
            assert t["job_status"] in ("succeeded", "cancelled"), t
            assert t["job_epoch"] >= t["epoch"], t
            if t["status"] == "pruned":
                assert t["epoch"] < 9 and t["model_id"] is None, t  # never pruned at its last epoch
            else:
                assert t["status"] == "complete" and t["job_status"] == "succeeded" and t["job_epoch"] == 9, t


# -- 6. sweep streams count against the stream caps --------------------------------------------------------------
def _open(port: int, path: str):
    from tests.adversarial.test_streams import open_path
    return open_path(port, path)


def test_sweep_event_streams_count_against_the_tenant_stream_cap(live_server):
    srv = live_server(workers=0, env={"MLP_MAX_STREAMS_PER_TENANT": "2"})
    http = srv.client()
    ds = _dataset(http, 40)
    sweep = http.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "space": {"epochs": 2}}).json()["id"]
    jobs = []
    import time as _time
    deadline = _time.monotonic() + 30
    while not (jobs := http.get(f"/v1/jobs?sweep_id={sweep}").json()["items"]):  # no workers: it stays queued
        assert _time.monotonic() < deadline
        _time.sleep(0.1)
    socks = []
    try:
        for _ in range(2):
            s, head = _open(srv.port, f"/v1/sweeps/{sweep}/events")
            socks.append(s)
            assert head.startswith(b"HTTP/1.1 200"), head
        for path, poll in ((f"/v1/sweeps/{sweep}/events", b"GET /v1/sweeps/{id}"),
                           (f"/v1/jobs/{jobs[0]['id']}/events", b"GET /v1/jobs/{id}")):
            s, head = _open(srv.port, path)
            socks.append(s)
            assert head.startswith(b"HTTP/1.1 429"), head
            answer = head + (b"" if poll in head else s.recv(4096))
            assert (b"too many open event streams: tenant default has 2, the limit is max_streams_per_tenant=2 "
                    b"(MLP_MAX_STREAMS_PER_TENANT); close one or poll " + poll) in answer, answer
        socks.pop(0).close()  # a closed sweep stream frees its slot
        deadline = _time.monotonic() + 10
        while True:
            s, head = _open(srv.port, f"/v1/sweeps/{sweep}/events")
            socks.append(s)
            if head.startswith(b"HTTP/1.1 200") or _time.monotonic() > deadline:
                break
            _time.sleep(0.2)
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        for s in socks:
            s.close()


# -- 10. smaller things ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("space, loc, msg", [
    ({"units": {"low": 64, "high": 16}}, ["body", "space"], "space.units: high (16) must be >= low (64)"),
    ({"learning_rate": {"low": 0.1, "high": 0.01, "log": True}}, ["body", "space"],
     "space.learning_rate: high (0.01) must be >= low (0.1)"),
    ({"units": True}, ["body", "space", "units", "value"], "a boolean is not a number: got true"),
    ({"units": [16, False]}, ["body", "space", "units", "choices", 1], "a boolean is not a number: got false"),
    ({"dropout": {"low": True, "high": 0.5}}, ["body", "space", "dropout", "range", "low"],
     "a boolean is not a number: got true"),
    ({"units": {"low": 1, "hgh": 3}}, ["body", "space", "units", "range", "high"], "Field required"),
    # a negative value would not fail: it trained something else (no dropout layer, no hidden layer)
    ({"dropout": -0.1}, ["body", "space", "dropout", "value"], "Input should be greater than or equal to 0"),
    ({"dropout": [-0.2, 0.1]}, ["body", "space", "dropout", "choices", 0],
     "Input should be greater than or equal to 0"),
    ({"hidden_layers": -1}, ["body", "space", "hidden_layers", "value"], "Input should be greater than or equal to 0"),
    ({"hidden_layers": [-2, 1]}, ["body", "space", "hidden_layers", "choices", 0],
     "Input should be greater than or equal to 0"),
    ({"weight_decay": {"low": -1.0, "high": 0.1}}, ["body", "space", "weight_decay", "range", "low"],
     "Input should be greater than or equal to 0"),
    ({"clip_norm": [None, -1.0]}, ["body", "space", "clip_norm", "choices", 1],
     "Input should be greater than or equal to 0"),
    # a string is not read as the number it spells, nor "yes" as true
    ({"epochs": "10"}, ["body", "space", "epochs", "value"], "a string is not a number: got '10'"),
    ({"batch_size": ["16", 32]}, ["body", "space", "batch_size", "choices", 0], "a string is not a number: got '16'"),
    ({"learning_rate": {"low": "0.001", "high": 0.1}}, ["body", "space", "learning_rate", "range", "low"],
     "a string is not a number: got '0.001'"),
    ({"shared_units": "yes"}, ["body", "space", "shared_units"], "Input should be a valid boolean"),
    ({"units": {"low": 16, "high": 64, "log": "true"}}, ["body", "space", "units", "range", "log"],
     "Input should be a valid boolean"),
    ({"learning_rate": {"low": 0.001, "high": 0.1, "log": True, "step": 0.01}}, ["body", "space", "learning_rate",
     "range"], "Value error, a log-scale range cannot have a step (Optuna samples either on a log scale or on "
               "steps)"),
])
def test_a_malformed_dimension_is_one_error_naming_it(idle, space, loc, msg):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 1, "space": space})
    assert r.status_code == 422, r.text
    first = r.json()["detail"][0]
    assert (first["loc"], first["msg"]) == (loc, msg)
    if "hgh" not in str(space):
        assert len(r.json()["detail"]) == 1, r.json()  # not also 'not an integer' and 'not a list'


def test_a_float_range_with_a_step_draws_only_its_steps_and_a_grid_enumerates_it(idle):
    """``step`` on a float range, as on an integer range (Optuna's FloatDistribution(step=...)): random and tpe draw
    low, low + step, ... <= high; a grid enumerates them (0.1 + 2 * 0.1 is 0.3); a step wider than the range is a
    422 as for integers."""
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    steps = {0.0, 0.1, 0.2, 0.3}
    for strategy in ("random", "tpe"):
        r = _sweep(c, dataset_id=ds, strategy=strategy, max_trials=12, space={
            "dropout": {"low": 0.0, "high": 0.35, "step": 0.1}, "epochs": 1, "hidden_layers": 1, "units": [4]})
        assert r.status_code == 202, r.text
        req = SweepCreate.model_validate(r.json()["request"])
        drawn = {suggest(req, study(req, "s", [], number=n).ask())["dropout"] for n in range(12)}
        assert drawn <= steps and len(drawn) >= 2, drawn
    r = _sweep(c, dataset_id=ds, strategy="grid", max_trials=None, space={
        "dropout": {"low": 0.0, "high": 0.35, "step": 0.1}, "hidden_layers": 1, "epochs": 1})
    assert r.status_code == 202, r.text
    assert r.json()["max_trials"] == 4
    assert grid_space(SweepCreate.model_validate(r.json()["request"]))["dropout"] == [0.0, 0.1, 0.2, 0.3]
    r = _sweep(c, dataset_id=ds, space={"dropout": {"low": 0.1, "high": 0.2, "step": 0.5}})
    assert r.status_code == 422 and r.json()["detail"] == (
        "space.dropout: step 0.5 is wider than the range 0.1..0.2, which then holds only 0.1; give a smaller step "
        "or the fixed value")
    r = _sweep(c, dataset_id=ds, strategy="grid", max_trials=None, space={
        "weight_decay": {"low": 0.0, "high": 1.0, "step": 1e-6}})  # counted, never listed
    assert r.status_code == 422 and r.json()["detail"].startswith("space: the grid has 2,000,002 points"), r.text
    for strategy in ("random", "tpe", "grid"):  # Optuna's step arithmetic failed in the driver at 1e-30
        r = _sweep(c, dataset_id=ds, strategy=strategy, space={"dropout": {"low": 0.0, "high": 0.3, "step": 1e-30}})
        assert r.status_code == 422 and r.json()["detail"] == (
            "space.dropout: step 1e-30 makes about 3e+29 values of 0..0.3, more than "
            "1,000,000,000; give a larger step, or none (any value of the range)"), r.text


@pytest.mark.parametrize("space", [{"learning_rate": 0}, {"learning_rate": [0]}, {"learning_rate": 0.0, "optimizer": "sgd"},
                                   {"learning_rate": 0, "hidden_layers": 2, "units": 4}])
def test_a_learning_rate_of_zero_is_named_as_the_failing_dimension(idle, space):
    """It was blamed on space.hidden_layers (the first dimension tried, with the space's top rate) and on adam."""
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = _sweep(c, dataset_id=ds, space={"epochs": 1, **space})
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "space.learning_rate: 0.0 fails every trial that draws it (optimizer."
        f"{space.get('optimizer', 'adam')}.learning_rate: Input should be greater than 0)"), r.text


def test_min_lr_is_checked_against_the_learning_rates_of_the_space(idle):
    """training.lr_schedule.min_lr against the space's learning rates, not the job's default: above every one of
    them is training's 422; above only some, the space's lowest is named; below all, accepted."""
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    cosine = {"lr_schedule": {"type": "cosine", "min_lr": 0.003}}
    r = _sweep(c, dataset_id=ds, space={"learning_rate": 0.01, "epochs": 2}, training=cosine)
    assert r.status_code == 202, r.text
    r = _sweep(c, dataset_id=ds, space={"learning_rate": {"low": 0.001, "high": 1.0, "log": True}, "epochs": 2},
               training={"lr_schedule": {"type": "cosine", "min_lr": 0.1}})
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "space.learning_rate: 0.001 fails every trial that draws it (lr_schedule.min_lr: 0.1 is above "
        "optimizer.learning_rate 0.001"), r.text
    r = _sweep(c, dataset_id=ds, space={"learning_rate": [0.001, 0.002], "epochs": 2}, training=cosine)
    assert r.status_code == 422 and r.json()["detail"].startswith(
        "training: lr_schedule.min_lr: 0.003 is above optimizer.learning_rate 0.002"), r.text


@pytest.mark.parametrize("field, value, msg", [
    ("max_seconds", True, "a boolean is not a number: got true"),   # was a 1-second budget
    ("max_trials", "5", "a string is not a number: got '5'"),
    ("parallelism", True, "a boolean is not a number: got true"),
    ("seed", "0", "a string is not a number: got '0'"),
    ("pruner_warmup_epochs", True, "a boolean is not a number: got true"),
    ("validation_split", "0.2", "a string is not a number: got '0.2'"),
    ("standardize", "yes", "Input should be a valid boolean"),
])
def test_top_level_numbers_and_booleans_are_not_read_from_other_types(idle, field, value, msg):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = _sweep(c, dataset_id=ds, **{field: value})
    assert r.status_code == 422 and [(e["loc"], e["msg"]) for e in r.json()["detail"]] == [(["body", field], msg)]


def test_training_preprocessing_null_is_the_default_as_for_a_job(idle):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = _sweep(c, dataset_id=ds, training={"preprocessing": None})
    assert r.status_code == 202, r.text
    assert r.json()["request"]["training"]["preprocessing"]["numeric"]["impute"] == "mean"


def test_zero_hidden_layers_is_a_linear_model(idle):
    """hidden_layers 0 is kept: the trial's network is the output layer alone (softmax regression)."""
    from service.sweeps.schemas import SweepCreate
    from service.sweeps.trials import network_spec

    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    r = _sweep(c, dataset_id=ds, space={"hidden_layers": 0, "epochs": 2})
    assert r.status_code == 202, r.text
    row = type("D", (), {"task": "classification", "classes": [0, 1, 2], "n_outputs": 1})()
    spec = network_spec(SweepCreate(dataset_id=ds, max_trials=1), {"hidden_layers": 0, "activation": "relu",
                                                                   "dropout": 0.0}, row, name="t")
    assert spec["layers"] == [{"type": "dense", "units": 3, "activation": "softmax"}]


def test_list_sweeps_filters_by_status(idle):
    c = idle
    X, y = load_iris(return_X_y=True)
    ds = _upload(c, X, y.tolist())
    a, b = (_sweep(c, dataset_id=ds).json()["id"] for _ in range(2))
    assert c.post(f"/v1/sweeps/{a}/cancel").status_code == 200
    got = c.get("/v1/sweeps?status=cancelled").json()
    assert got["total"] == 1 and [s["id"] for s in got["items"]] == [a]
    got = c.get("/v1/sweeps?status=running").json()
    assert got["total"] == 1 and [s["id"] for s in got["items"]] == [b]
    r = c.get("/v1/sweeps?status=bogus")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "status"]
