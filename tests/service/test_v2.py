"""Open Inference Protocol v2 under /v2, driven by the real tritonclient[http] against a live server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.service.helpers import LiveServer, blobs, mlp_spec, wait_job

UNKNOWN = "0123456789abcdef0123456789abcdef"


def _train(c, X, y, spec, task=None) -> str:
    net = c.post("/v1/networks", json=spec).json()
    body = {"name": "v2", "X": np.asarray(X).tolist(), "y": np.asarray(y).tolist()}
    if task:
        body["task"] = task
    ds = c.post("/v1/datasets", json=body).json()
    job = c.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 5}).json()
    job = wait_job(c, job["id"], timeout=30)
    assert job["status"] == "succeeded", job
    return job["model_id"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live server with a 3-class string-label model and a 2-output regression model."""
    srv = LiveServer(tmp_path_factory.mktemp("v2") / "data", workers=1).start()
    try:
        with srv.client() as c:
            X, y = blobs()
            clf = _train(c, X, np.array(["red", "green", "blue"])[y], mlp_spec(3))
            Y = np.stack([X[:, 0] + X[:, 1], X[:, 2]], axis=1).round(4)
            reg = _train(c, X, Y, mlp_spec(2, loss="mse"), task="regression")
            yield {"srv": srv, "http": c, "clf": clf, "reg": reg, "X": X.astype(np.float32)}
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tc(server):
    client = triton.InferenceServerClient(url=server["srv"].url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def _v1(server, model_id, X):
    r = server["http"].post(f"/v1/models/{model_id}/predict", json={"inputs": np.asarray(X).tolist()})
    assert r.status_code == 200, r.text
    return r.json()


def test_health_server_and_model_metadata(server, tc):
    assert tc.is_server_live()
    assert tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "mlp-service" and "binary_tensor_data" in meta["extensions"]
    assert tc.is_model_ready(server["clf"])
    assert not tc.is_model_ready(UNKNOWN)
    m = tc.get_model_metadata(server["clf"])
    assert m["name"] == server["clf"] and m["versions"] == ["1"] and m["platform"]
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert m["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert tc.get_model_metadata(server["reg"])["outputs"] == [
        {"name": "predictions", "datatype": "FP32", "shape": [-1, 2]}]
    with pytest.raises(InferenceServerException, match=f"model {UNKNOWN} not found"):
        tc.get_model_metadata(UNKNOWN)


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, True), (False, True), (True, False)])
def test_infer_equals_v1_predict(server, tc, binary_in, binary_out):
    X = server["X"][:17]
    ref = _v1(server, server["clf"], X)
    inp = triton.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary_in)
    outs = [triton.InferRequestedOutput("label", binary_data=binary_out),
            triton.InferRequestedOutput("probabilities", binary_data=binary_out)]
    res = tc.infer(server["clf"], [inp], outputs=outs, request_id="r1")
    assert res.get_response()["id"] == "r1"
    labels = [v.decode() if isinstance(v, bytes) else v for v in res.as_numpy("label").tolist()]
    assert labels == ref["predictions"]
    proba = res.as_numpy("probabilities")
    assert proba.dtype == np.float32 and proba.shape == (17, 3)
    np.testing.assert_allclose(proba, ref["probabilities"], atol=1e-6)


@pytest.mark.parametrize("datatype", ["FP64", "INT64", "BYTES"])
def test_other_input_datatypes(server, tc, datatype):
    X = np.round(server["X"][:9])
    ref = _v1(server, server["clf"], X)
    data = {"FP64": X.astype(np.float64), "INT64": X.astype(np.int64),
            "BYTES": np.array([[str(int(v)) for v in row] for row in X], dtype=object)}[datatype]
    for binary in (False, True):
        inp = triton.InferInput("input", list(X.shape), datatype)
        inp.set_data_from_numpy(data, binary_data=binary)
        res = tc.infer(server["clf"], [inp])
        np.testing.assert_allclose(res.as_numpy("probabilities"), ref["probabilities"], atol=1e-6)


def test_regression_infer(server, tc):
    X = server["X"][:5]
    ref = np.array(_v1(server, server["reg"], X)["predictions"], dtype=np.float32)
    inp = triton.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    res = tc.infer(server["reg"], [inp], outputs=[triton.InferRequestedOutput("predictions", binary_data=True)])
    np.testing.assert_allclose(res.as_numpy("predictions"), ref, rtol=1e-6)


def test_json_protocol_details_and_errors(server):
    c, clf = server["http"], server["clf"]
    X = server["X"][:2]
    nested = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.tolist()}]}
    r = c.post(f"/v2/models/{clf}/infer", json=nested)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == clf and body["model_version"] == "1"
    assert [o["name"] for o in body["outputs"]] == ["label", "probabilities"]
    assert body["outputs"][1]["shape"] == [2, 3] and len(body["outputs"][1]["data"]) == 6
    assert c.post(f"/v2/models/{clf}/versions/1/infer", json=nested).status_code == 200

    def bad(payload, status, error, path=f"/v2/models/{clf}/infer"):
        r = c.post(path, json=payload)
        assert (r.status_code, r.json()) == (status, {"error": error})

    t = nested["inputs"][0]
    bad({"inputs": [{**t, "name": "x"}]}, 400, f"model '{clf}' takes one input tensor 'input', got ['x']")
    bad({"inputs": [{**t, "shape": [2, 5]}]}, 400,
        "input 'input': shape must be [n, 4] (the model's input width), got [2, 5]")
    bad({"inputs": [{**t, "shape": [3, 4]}]}, 400, "input 'input': data has 8 elements but shape [3, 4] needs 12")
    bad({"inputs": [{**t, "datatype": "FP8"}]}, 400,
        "input 'input': unsupported datatype 'FP8'; use FP32, FP64, INT64, another numeric type, or BYTES")
    bad({"inputs": [{**t, "datatype": "BYTES", "data": ["1", "2", "x", "4", "1", "2", "3", "4"]}]}, 400,
        "input 'input': element 2 ('x') is not a number")
    bad({**nested, "outputs": [{"name": "scores"}]}, 400,
        f"unexpected inference output 'scores' for model '{clf}'; it has ['label', 'probabilities']")
    bad({"inputs": []}, 400, "the inference request needs 'inputs': a list with the tensor 'input'")
    bad(nested, 404, f"model {UNKNOWN} not found", path=f"/v2/models/{UNKNOWN}/infer")
    bad(nested, 404, f"model {clf} has no version '2' (its only version is '1')",
        path=f"/v2/models/{clf}/versions/2/infer")
    r = c.get(f"/v2/models/{UNKNOWN}/ready")
    assert (r.status_code, r.json()) == (404, {"error": f"model {UNKNOWN} not found"})


def test_categorical_columns_go_in_as_codes_of_input_schema(server, tc):
    """A model with a text column takes it in `input` as the index into input_schema's categories; any other
    code is an unseen category, as an unknown text through /v1 records."""
    c = server["http"]
    rng = np.random.default_rng(0)
    colours = np.array(["red", "green", "blue"])[rng.integers(0, 3, 90)]
    size = rng.normal(size=90).round(3)
    csv = "size,colour,y\n" + "".join(f"{s},{k},{'warm' if k == 'red' else 'cold'}\n" for s, k in zip(size, colours))
    ds = c.post("/v1/datasets", files={"file": ("c.csv", csv.encode(), "text/csv")}, data={"name": "cat"}).json()
    net = c.post("/v1/networks", json=mlp_spec(2)).json()
    job = c.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 3}).json()
    job = wait_job(c, job["id"], timeout=30)
    assert job["status"] == "succeeded", job
    schema = c.get(f"/v1/models/{job['model_id']}").json()["input_schema"]
    assert [col["name"] for col in schema] == ["size", "colour"]
    cats = schema[1]["categories"]
    records = [{"size": 0.5, "colour": k} for k in [*cats, "purple"]]
    ref = c.post(f"/v1/models/{job['model_id']}/predict", json={"records": records}).json()
    X = np.array([[0.5, code] for code in [*range(len(cats)), -1]], dtype=np.float32)
    inp = triton.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    res = tc.infer(job["model_id"], [inp])
    np.testing.assert_allclose(res.as_numpy("probabilities"), ref["probabilities"], atol=1e-6)


def test_v2_applies_keys_and_tenancy(tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    keys = tmp_path / "keys.txt"
    keys.write_text("team-a:key-a-0123456789abcdef\nteam-b:key-b-0123456789abcdef\n")
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1, api_keys_file=str(keys)))
    with TestClient(app) as c:
        a = {"Authorization": "Bearer key-a-0123456789abcdef"}
        b = {"Authorization": "Bearer key-b-0123456789abcdef"}
        c.headers.update(a)
        X, y = blobs(n=60)
        model_id = _train(c, X, y, mlp_spec(3))
        c.headers.clear()
        assert c.get("/v2/health/live").status_code == 200
        r = c.get(f"/v2/models/{model_id}")
        assert (r.status_code, r.json()) == (401, {"error": "missing API key: send the header "
                                                            "'Authorization: Bearer <key>'"})
        r = c.get(f"/v2/models/{model_id}", headers=b)
        assert (r.status_code, r.json()) == (404, {"error": f"model {model_id} not found"})
        r = c.get(f"/v2/models/{model_id}", headers=a)
        assert r.status_code == 200 and r.json()["name"] == model_id
