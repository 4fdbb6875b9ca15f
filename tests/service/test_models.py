"""/v1/models: read, list, delete and predict, with models trained in-test by core (no job runner needed)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

import core
from service.auth import DEFAULT_OWNER
from service.models import service as models_service
from service.models.tables import TrainedModel
from tests.service.helpers import assert_same_404


def blobs(n: int = 150, d: int = 4, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    y = np.arange(n) % k
    return (centers[y] + rng.normal(size=(n, d)) + 10.0).astype(np.float32), y


def insert_model(app, net, *, model_id: str, task: str, classes=None, owner: str = DEFAULT_OWNER, job_id="job1"):
    """Save ``net`` where the worker would and insert its row."""
    key = models_service.artifact_key(model_id)
    with app.state.storage.atomic_writer(key) as tmp:
        net.save(tmp)
    with app.state.sessionmaker() as session:
        session.add(TrainedModel(id=model_id, owner=owner, job_id=job_id, network_id="n" * 32, dataset_id="d" * 32,
                                 task=task, classes=classes, input_dim=net.input_dim, output_dim=net.output_dim,
                                 metrics={"epoch": 30, "train_loss": 0.1, "best_epoch": 30}, artifact_key=key))
        session.commit()
    return model_id


@pytest.fixture
def colour_model(app, client):
    """A 3-class softmax model on string labels, trained with standardisation."""
    X, y = blobs()
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                             {"type": "dense", "units": 3, "activation": "softmax"}],
                                  "loss": "cross_entropy"})
    core.fit(net, X, y, epochs=30, batch_size=16, optimizer={"type": "adam", "learning_rate": 0.01},
             standardize=True, seed=0)
    classes = ["blue", "green", "red"]
    insert_model(app, net, model_id="c" * 32, task="classification", classes=classes)
    return {"id": "c" * 32, "net": net, "X": X, "labels": np.array(classes)[y], "classes": classes}


@pytest.fixture
def binary_model(app, client):
    X, y = blobs(k=2, seed=1)
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                                             {"type": "dense", "units": 1, "activation": "sigmoid"}],
                                  "loss": "binary_cross_entropy"})
    core.fit(net, X, y, epochs=20, batch_size=16, optimizer={"type": "adam", "learning_rate": 0.01},
             standardize=True)
    insert_model(app, net, model_id="b" * 32, task="classification", classes=[0, 1])
    return {"id": "b" * 32, "net": net, "X": X, "y": y}


@pytest.fixture
def regression_model(app, client):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 3.0).astype(np.float32)
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    core.fit(net, X, y, epochs=60, batch_size=16, optimizer={"type": "adam", "learning_rate": 0.05})
    insert_model(app, net, model_id="r" * 32, task="regression")
    return {"id": "r" * 32, "net": net, "X": X, "y": y}


def predict(client, model_id, inputs):
    return client.post(f"/v1/models/{model_id}/predict", json={"inputs": inputs})


# -- read, list, delete ------------------------------------------------------------------------------------

def test_get_200(client, colour_model):
    r = client.get(f"/v1/models/{colour_model['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["task"] == "classification" and body["classes"] == ["blue", "green", "red"]
    assert body["input_dim"] == 4 and body["output_dim"] == 3 and body["job_id"] == "job1"
    assert body["metrics"]["best_epoch"] == 30


def test_get_404(client):
    r = client.get("/v1/models/unknown")
    assert r.status_code == 404 and r.json()["detail"] == "model unknown not found"


def test_list_limit_offset_and_job_filter(app, client, colour_model, regression_model):
    body = client.get("/v1/models").json()
    assert body["total"] == 2 and {m["id"] for m in body["items"]} == {colour_model["id"], regression_model["id"]}
    assert len(client.get("/v1/models", params={"limit": 1, "offset": 1}).json()["items"]) == 1
    assert client.get("/v1/models", params={"job_id": "job1"}).json()["total"] == 2
    assert client.get("/v1/models", params={"job_id": "other"}).json()["total"] == 0


def test_delete_204_removes_weights_and_cache(app, client, colour_model):
    assert predict(client, colour_model["id"], colour_model["X"][:1].tolist()).status_code == 200
    r = client.delete(f"/v1/models/{colour_model['id']}")
    assert r.status_code == 204
    assert not app.state.storage.exists(models_service.artifact_key(colour_model["id"]))
    r = predict(client, colour_model["id"], colour_model["X"][:1].tolist())
    assert r.status_code == 404 and r.json()["detail"] == f"model {colour_model['id']} not found"
    assert client.delete(f"/v1/models/{colour_model['id']}").status_code == 404


def test_other_tenant_gets_404(app, client):
    net = core.Network.from_spec({"input_dim": 2, "layers": [{"type": "dense", "units": 1}], "loss": "mse"}, seed=0)
    insert_model(app, net, model_id="o" * 32, task="regression", owner="someone-else")
    assert_same_404(client, "get", "/v1/models/{}", "o" * 32)
    assert_same_404(client, "post", "/v1/models/{}/predict", "o" * 32, json={"inputs": [[1.0, 2.0]]})
    assert_same_404(client, "delete", "/v1/models/{}", "o" * 32)
    assert client.get("/v1/models").json()["total"] == 0


# -- predict ------------------------------------------------------------------------------------------------

def test_predict_classification_labels_as_uploaded_with_probabilities(client, colour_model):
    X = colour_model["X"]
    r = predict(client, colour_model["id"], X.tolist())
    assert r.status_code == 200
    body = r.json()
    assert set(body["predictions"]) <= {"blue", "green", "red"}
    accuracy = np.mean(np.array(body["predictions"]) == colour_model["labels"])
    assert accuracy > 0.95
    proba = np.array(body["probabilities"])
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # the standardisation learned in training is applied: same answer as the engine on raw inputs
    expected = np.array(colour_model["classes"])[colour_model["net"].predict(X)]
    assert body["predictions"] == expected.tolist()
    np.testing.assert_allclose(proba, colour_model["net"].predict_proba(X), atol=1e-6)


def test_predict_one_row(client, colour_model):
    r = predict(client, colour_model["id"], [colour_model["X"][0].tolist()])
    assert r.status_code == 200
    assert r.json()["predictions"] == [colour_model["labels"][0]]
    assert len(r.json()["probabilities"][0]) == 3


def test_predict_binary_numeric_labels_two_probability_columns(client, binary_model):
    r = predict(client, binary_model["id"], binary_model["X"][:10].tolist())
    assert r.status_code == 200
    body = r.json()
    assert body["predictions"] == binary_model["net"].predict(binary_model["X"][:10]).tolist()
    assert all(isinstance(p, int) for p in body["predictions"])
    assert np.array(body["probabilities"]).shape == (10, 2)


def test_predict_regression_values_no_probabilities(client, regression_model):
    X = regression_model["X"][:20]
    r = predict(client, regression_model["id"], X.tolist())
    assert r.status_code == 200
    body = r.json()
    assert "probabilities" not in body
    np.testing.assert_allclose(body["predictions"], regression_model["net"].predict(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(body["predictions"], regression_model["y"][:20], atol=0.2)


def test_predict_large_batch_runs_off_the_event_loop(client, colour_model):
    X = np.repeat(colour_model["X"], 40, axis=0)          # > 64 KiB of JSON
    body = orjson.dumps({"inputs": X}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(body) > 64 * 1024
    r = client.post(f"/v1/models/{colour_model['id']}/predict", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == len(X)


@pytest.mark.parametrize("inputs, detail", [
    ([[1.0, 2.0]], "inputs rows must have 4 values (the model's input width), got 2"),
    ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], "inputs[1] has 2 values but inputs[0] has 4 (ragged rows)"),
    ([[1.0, 2.0, 3.0, None]], "inputs[0][3] is not a finite number: null"),
    ([[1.0, 2.0, 3.0, 1e39]], "inputs[0][3] is not a finite number: 1e+39"),
    ([[1.0, 2.0, "three", 4.0]], "inputs[0][2] is not a number: 'three'"),
    ([[1.0, 2.0, "3", 4.0]], "inputs[0][2] is not a number: '3'"),      # text is never a number, as by name
    ([[1.0, 2.0, 3.0, 4.0], [True, 2.0, 3.0, 4.0]], "inputs[1][0] is not a number: true"),
    ([], "inputs is empty: send at least one row"),
    ([1.0, 2.0, 3.0, 4.0], "inputs[0] must be a list of numbers, got 1.0"),
    ("abc", "inputs must be a list of rows (lists of numbers), got str"),
])
def test_predict_422_names_the_problem(client, colour_model, inputs, detail):
    r = predict(client, colour_model["id"], inputs)
    assert r.status_code == 422
    assert r.json()["detail"] == detail


def test_predict_422_body_shape(client, colour_model):
    url = f"/v1/models/{colour_model['id']}/predict"
    r = client.post(url, content=b"[[1,2,3,4]]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"] == (
        'the body must be an object: {"inputs": [[...], ...]}, {"records": [{"column": value, ...}, ...]} or '
        '{"columns": [...], "data": [[...], ...]}')
    r = client.post(url, content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("the body is not valid JSON")
    r = client.post(url, json={"inputs": [[1, 2, 3, 4]], "extra": 1})
    assert r.status_code == 422 and r.json()["detail"].startswith("unknown field(s) ['extra']")


def test_predict_404_unknown_model(client):
    r = predict(client, "nope", [[1.0]])
    assert r.status_code == 404 and r.json()["detail"] == "model nope not found"


@pytest.mark.settings(max_upload_bytes=1000)
def test_predict_413_body_over_limit(client, colour_model):
    r = predict(client, colour_model["id"], colour_model["X"][:100].tolist())
    assert r.status_code == 413
    assert r.json()["detail"] == "body exceeds the limit of 1,000 bytes (MLP_MAX_UPLOAD_BYTES)"


def test_model_loaded_once_then_cached(monkeypatch, client, colour_model):
    calls = []
    real = core.Network.load

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(core.Network, "load", staticmethod(counting))
    for _ in range(3):
        assert predict(client, colour_model["id"], colour_model["X"][:2].tolist()).status_code == 200
    assert len(calls) == 1


def test_cache_is_lru_bounded():
    cache = models_service.ModelCache(capacity=2)
    items = [models_service.LoadedModel(model_id=str(i), net=None, task="regression", classes=None, input_dim=1)
             for i in range(3)]
    cache.put("o", items[0])
    cache.put("o", items[1])
    assert cache.get("o", "0") is items[0]          # 0 is now most recent
    cache.put("o", items[2])                          # evicts 1
    assert cache.get("o", "1") is None and cache.get("o", "0") is items[0] and len(cache) == 2
    assert cache.get("other-owner", "0") is None


def test_openapi_documents_predict_body(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/models/{model_id}/predict"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"inputs", "records", "columns", "data"} <= set(schema["properties"])
    assert schema["properties"]["inputs"]["anyOf"][0]["type"] == "array"
    assert schema["examples"][0]["inputs"][0] == [5.1, 3.5, 1.4, 0.2]
    assert schema["examples"][1]["records"][0]["plan"] == "pro"


def test_cached_model_deleted_elsewhere_is_dropped_after_revalidation(monkeypatch, app, client, colour_model):
    url_inputs = colour_model["X"][:1].tolist()
    assert predict(client, colour_model["id"], url_inputs).status_code == 200
    with app.state.sessionmaker() as session:           # another API process deletes the row
        session.delete(session.get(TrainedModel, colour_model["id"]))
        session.commit()
    monkeypatch.setattr(models_service, "REVALIDATE_SECONDS", 0.0)
    r = predict(client, colour_model["id"], url_inputs)
    assert r.status_code == 404 and r.json()["detail"] == f"model {colour_model['id']} not found"


def test_concurrent_predictions_do_not_mix(client, colour_model, regression_model):
    """The engine reuses per-shape buffers, so predictions on one model are serialised by its lock."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    Xc = colour_model["X"]
    Xr = regression_model["X"]
    jobs = []
    for i in range(40):
        rows = rng.choice(len(Xc), size=int(rng.integers(1, 30)))
        jobs.append(("c", Xc[rows]) if i % 2 else ("r", Xr[rows % len(Xr)]))

    def run(job):
        kind, X = job
        model = colour_model if kind == "c" else regression_model
        return predict(client, model["id"], X.tolist()).json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(run, jobs))
    for (kind, X), got in zip(jobs, answers):
        if kind == "c":
            assert got == np.array(colour_model["classes"])[colour_model["net"].predict(X)].tolist()
        else:
            np.testing.assert_allclose(got, regression_model["net"].predict(X), rtol=1e-5, atol=1e-5)
