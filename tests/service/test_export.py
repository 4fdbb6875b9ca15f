"""GET /v1/models/{id}/export and /download: ONNX graphs that onnxruntime runs to our probabilities, and the .npz."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import core
from tests.service.helpers import blobs

rng = np.random.default_rng(7)

# Every activation (hidden and output), every loss/task, dropout, a stand-alone activation layer, with and
# without standardisation, labels as strings, ints and floats.
CASES = {
    "softmax_relu_dropout_strings": dict(
        layers=[{"type": "dense", "units": 12, "activation": "relu"}, {"type": "dropout", "rate": 0.3},
                {"type": "dense", "units": 3, "activation": "softmax"}],
        loss="cross_entropy", labels=np.array(["red", "green", "blue"]), standardize=True),
    "softmax_layer_tanh_ints": dict(
        layers=[{"type": "dense", "units": 10, "activation": "linear"}, {"type": "activation", "name": "tanh"},
                {"type": "dense", "units": 3}, {"type": "activation", "name": "softmax"}],
        loss="cross_entropy", labels=np.array([3, 7, 11]), standardize=False),
    "sigmoid_leaky_relu_strings": dict(
        layers=[{"type": "dense", "units": 8, "activation": "leaky_relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"}],
        loss="binary_cross_entropy", labels=np.array(["yes", "no"]), standardize=True),
    "sigmoid_hidden_floats": dict(
        layers=[{"type": "dense", "units": 8, "activation": "sigmoid"}, {"type": "dropout", "rate": 0.1},
                {"type": "dense", "units": 1, "activation": "sigmoid"}],
        loss="binary_cross_entropy", labels=np.array([0.5, 2.5]), standardize=True),
    "mse_two_outputs": dict(
        layers=[{"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "linear"}],
        loss="mse", labels=None, standardize=True),
    "mae_sigmoid_output": dict(
        layers=[{"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dense", "units": 1, "activation": "sigmoid"}],
        loss="mae", labels=None, standardize=False),
    "softmax_batch_norm_max_norm_strings": dict(
        layers=[{"type": "dense", "units": 12, "activation": "relu", "max_norm": 2.0},
                {"type": "batch_norm", "momentum": 0.3}, {"type": "dense", "units": 3, "activation": "softmax"}],
        loss="cross_entropy", labels=np.array(["red", "green", "blue"]), standardize=True),
    "huber_batch_norm_two_outputs": dict(
        layers=[{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "batch_norm"},
                {"type": "dense", "units": 2, "activation": "linear"}],
        loss="huber", labels=None, standardize=False),
}


def _data(case: dict, n: int = 160):
    k = 3 if case["loss"] == "cross_entropy" else 2
    X, y = blobs(n=n, d=5, k=k, seed=1)
    if case["labels"] is not None:
        return X, case["labels"][y]
    if case["loss"] in ("mse", "huber"):
        return X, np.stack([X[:, 0] * 0.5 + X[:, 1], X[:, 2] - X[:, 3]], axis=1).round(4)
    return X, (1 / (1 + np.exp(-X[:, 0]))).round(4)


@pytest.fixture
def exported(client, make_network, make_dataset, wait_job):
    """Train every case through the API: {case: (model_id, X_train)}."""
    jobs = {}
    for name, case in CASES.items():
        X, y = _data(case)
        net = make_network(client, {"name": name, "layers": case["layers"], "loss": case["loss"]})
        body = {"name": name, "X": X.tolist(), "y": y.tolist()}
        body["task"] = "regression" if case["labels"] is None else "classification"
        r = client.post("/v1/datasets", json=body)
        assert r.status_code == 201, r.text
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": r.json()["id"], "epochs": 8,
                                          "batch_size": 16, "standardize": case["standardize"],
                                          "optimizer": {"type": "adam", "learning_rate": 0.01}})
        assert r.status_code == 202, r.text
        jobs[name] = (r.json()["id"], X)
    out = {}
    for name, (job_id, X) in jobs.items():
        job = wait_job(client, job_id)
        assert job["status"] == "succeeded", job
        out[name] = (job["model_id"], X)
    return out


def _held_out(X: np.ndarray, n: int = 50) -> np.ndarray:
    lo, hi = X.min(axis=0), X.max(axis=0)
    return rng.uniform(lo - 1, hi + 1, size=(n, X.shape[1])).astype(np.float32)


def test_onnx_export_matches_predict_for_every_activation_loss_and_dropout(client, exported):
    for name, (model_id, X) in exported.items():
        case = CASES[name]
        r = client.get(f"/v1/models/{model_id}/export", params={"format": "onnx"})
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-disposition"] == f'attachment; filename="{model_id}.onnx"'
        proto = onnx.load_model_from_string(r.content)
        onnx.checker.check_model(proto)
        assert {p.key: p.value for p in proto.metadata_props}["model_id"] == model_id
        sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["input"]
        Xh = _held_out(X)
        ours = client.post(f"/v1/models/{model_id}/predict", json={"inputs": Xh.tolist()}).json()
        if case["labels"] is not None:
            label, proba = sess.run(["label", "probabilities"], {"input": Xh})
            np.testing.assert_allclose(proba, np.array(ours["probabilities"]), atol=1e-5, err_msg=name)
            assert label.tolist() == ours["predictions"], name
            assert proba.shape == (len(Xh), len(case["labels"]))
        else:
            (pred,) = sess.run(["predictions"], {"input": Xh})
            want = np.array(ours["predictions"], dtype=np.float32).reshape(len(Xh), -1)
            np.testing.assert_allclose(pred, want, atol=1e-5, rtol=1e-5, err_msg=name)


def test_npz_export_and_download_load_in_core(client, trained_model):
    model_id = trained_model["model_id"]
    Xh = _held_out(trained_model["X"], 20)
    ours = client.post(f"/v1/models/{model_id}/predict", json={"inputs": Xh.tolist()}).json()
    for path in (f"/v1/models/{model_id}/download", f"/v1/models/{model_id}/export?format=npz"):
        r = client.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == f'attachment; filename="{model_id}.npz"'
        net = core.Network.load(io.BytesIO(r.content))
        np.testing.assert_allclose(net.predict_proba(Xh), np.array(ours["probabilities"]), atol=1e-6)


def test_export_errors(client, trained_model):
    model_id = trained_model["model_id"]
    r = client.get(f"/v1/models/{model_id}/export", params={"format": "pmml"})
    assert r.status_code == 422
    assert r.json()["detail"] == "format must be one of onnx, npz, got 'pmml'"
    for path in ("/v1/models/0123456789abcdef0123456789abcdef/export",
                 "/v1/models/0123456789abcdef0123456789abcdef/download"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["detail"] == "model 0123456789abcdef0123456789abcdef not found"


@pytest.mark.parametrize("numeric", [
    {"impute": "median", "add_indicator": True, "scale": "standard"},
    {"impute": "mean", "scale": "minmax"},
    {"impute": "constant", "fill_value": -1.0, "scale": "none"},
])
@pytest.mark.parametrize("max_categories", [None, 2])
def test_onnx_preprocessing_with_categorical_boolean_and_missing_inputs(numeric, max_categories):
    from service.models.export import to_onnx

    g = np.random.default_rng(3)
    n = 300
    cats = ["basic", "pro", "team", "enterprise"]
    X = np.column_stack([g.normal(50, 10, n), g.integers(0, 4, n).astype(float), g.normal(0, 1, n),
                         g.integers(0, 2, n).astype(float)])
    y = ((X[:, 0] > 50) ^ (X[:, 1] >= 2)).astype(int) + (X[:, 3] > 0).astype(int)
    for col, frac in ((0, 0.1), (1, 0.1), (2, 0.05), (3, 0.1)):            # missing values everywhere
        X[g.random(n) < frac, col] = np.nan
    columns = [{"name": "age", "type": "numeric"}, {"name": "plan", "type": "categorical", "categories": cats},
               {"name": "score", "type": "numeric"}, {"name": "active", "type": "boolean"}]
    prep = core.Preprocessor(columns, numeric=numeric, categorical={"max_categories": max_categories})
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 12, "activation": "tanh"},
                                             {"type": "dense", "units": 3, "activation": "softmax"}],
                                  "loss": "cross_entropy"})
    core.fit(net, X, y, epochs=3, batch_size=32, preprocessing=prep, seed=0)
    held = np.column_stack([g.normal(50, 15, 80), g.integers(-1, 6, 80).astype(float),   # unseen codes too
                            g.normal(0, 2, 80), g.integers(0, 2, 80).astype(float)]).astype(np.float32)
    held[g.random(80) < 0.2, 0] = np.nan
    held[g.random(80) < 0.2, 1] = np.nan
    held[g.random(80) < 0.2, 3] = np.nan
    held[3, 1] = 4.0                                                    # the literal n_codes: unseen, not missing
    sess = ort.InferenceSession(to_onnx(net, classes=["a", "b", "c"]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"input": held})
    ours = net.predict_proba(held)
    np.testing.assert_allclose(proba, ours, atol=1e-5)
    assert label.tolist() == [["a", "b", "c"][i] for i in ours.argmax(axis=1)]
