"""POST /v1/models/{id}/predict with .npy, Arrow, Parquet and CSV bodies, answering per the Accept header."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

NPY = "application/x-npy"
ARROW = "application/vnd.apache.arrow.stream"


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server and one trained 3-class model (string labels) for the whole module."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.service.helpers import blobs, mlp_spec, post_dataset, post_network, wait_job

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("formats") / "data", workers=1))
    with TestClient(app) as c:
        X, y = blobs()
        labels = np.array(["red", "green", "blue"])[y]
        net = post_network(c, mlp_spec(3))
        ds = post_dataset(c, X, labels)
        job = c.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 5}).json()
        job = wait_job(c, job["id"])
        assert job["status"] == "succeeded", job
        yield c, {"model_id": job["model_id"], "X": X}


@pytest.fixture
def client(shared):
    return shared[0]


@pytest.fixture
def trained_model(shared):
    return shared[1]


@pytest.fixture
def model(client, trained_model):
    X = np.asarray(trained_model["X"][:25], dtype=np.float32)
    url = f"/v1/models/{trained_model['model_id']}/predict"
    ref = client.post(url, json={"inputs": X.tolist()}).json()
    return {"url": url, "X": X, "ref": ref}


def _bodies(X: np.ndarray) -> dict[str, tuple[str, bytes]]:
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    table = pa.Table.from_pandas(df, preserve_index=False)
    fsl = pa.table({"inputs": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])})
    return {"npy": (NPY, npy_bytes(X)), "npy_float64": (NPY, npy_bytes(X.astype(np.float64))),
            "arrow": (ARROW, arrow_bytes(table)), "arrow_list": (ARROW, arrow_bytes(fsl)),
            "parquet": ("application/vnd.apache.parquet", parquet_bytes(table)),
            "csv": ("text/csv", df.to_csv(index=False).encode())}


@pytest.mark.parametrize("body", ["npy", "npy_float64", "arrow", "arrow_list", "parquet", "csv"])
def test_binary_bodies_answer_json_like_the_json_body(client, model, body):
    ctype, data = _bodies(model["X"])[body]
    r = client.post(model["url"], content=data, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    assert got["predictions"] == model["ref"]["predictions"]
    np.testing.assert_allclose(got["probabilities"], model["ref"]["probabilities"], atol=1e-6)


@pytest.mark.parametrize("body", ["json", "npy", "arrow"])
def test_accept_npy_answers_the_probabilities(client, model, body):
    headers = {"Accept": NPY}
    if body == "json":
        r = client.post(model["url"], json={"inputs": model["X"].tolist()}, headers=headers)
    else:
        ctype, data = _bodies(model["X"])[body]
        r = client.post(model["url"], content=data, headers={**headers, "Content-Type": ctype})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == NPY
    proba = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert proba.dtype == np.float32 and proba.shape == (25, 3)
    np.testing.assert_allclose(proba, model["ref"]["probabilities"], atol=1e-6)


def test_accept_arrow_answers_labels_and_probabilities(client, model):
    r = client.post(model["url"], content=npy_bytes(model["X"]),
                    headers={"Content-Type": NPY, "Accept": f"{ARROW}, application/json;q=0.5"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column_names == ["prediction", "probabilities"]
    assert table.column("prediction").to_pylist() == model["ref"]["predictions"]
    proba = np.array(table.column("probabilities").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(proba, model["ref"]["probabilities"], atol=1e-6)


def test_big_npy_body_is_predicted_off_the_event_loop_in_full(client, trained_model):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 4)).astype(np.float32)          # 320 kB: above the inline limit
    url = f"/v1/models/{trained_model['model_id']}/predict"
    r = client.post(url, content=npy_bytes(X), headers={"Content-Type": NPY, "Accept": NPY})
    assert r.status_code == 200, r.text
    proba = np.load(io.BytesIO(r.content))
    assert proba.shape == (20_000, 3)
    ref = client.post(url, json={"inputs": X[-5:].tolist()}).json()
    np.testing.assert_allclose(proba[-5:], ref["probabilities"], atol=1e-6)


def test_big_json_bodies_answer_exactly_as_the_npy_body(client, trained_model, monkeypatch):
    """A 2,000-row JSON body (read by the simdjson fast path) gets the very probabilities of the same float32
    rows sent as .npy, through /v1 and through OIP v2 with flat and nested data."""
    from service import bodies
    from service.bodies import FAST_MIN_BYTES
    read, shapes = bodies._read_numbers, []

    def spy(*args):
        out = read(*args)
        shapes.append(None if out is None else out.shape)
        return out

    monkeypatch.setattr(bodies, "_read_numbers", spy)
    X = np.random.default_rng(3).normal(size=(2000, 4)).astype(np.float32)
    mid = trained_model["model_id"]
    url = f"/v1/models/{mid}/predict"
    r = client.post(url, content=npy_bytes(X), headers={"Content-Type": NPY, "Accept": NPY})
    ref = np.load(io.BytesIO(r.content))
    body = orjson.dumps({"inputs": X}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(body) > FAST_MIN_BYTES
    r = client.post(url, content=body, headers={"Content-Type": "application/json", "Accept": NPY})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.load(io.BytesIO(r.content)), ref)
    for data in (X.reshape(-1), X):
        body = orjson.dumps({"inputs": [{"name": "input", "shape": [2000, 4], "datatype": "FP32", "data": data}],
                             "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        r = client.post(f"/v2/models/{mid}/infer", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        head = int(r.headers["inference-header-content-length"])
        assert np.array_equal(np.frombuffer(r.content[head:], dtype="<f4").reshape(2000, 3), ref)
    assert shapes == [(2000, 4), (8000,), (2000, 4)]          # each body went through the fast path


def test_regression_answers_values_as_npy_and_arrow(client, make_network, make_dataset, wait_job):
    from tests.service.helpers import mlp_spec
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    net = make_network(client, mlp_spec(1, loss="mse"))
    ds = make_dataset(client, X.round(4), y.round(4), task="regression")
    job = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 3}).json()
    model_id = wait_job(client, job["id"])["model_id"]
    url = f"/v1/models/{model_id}/predict"
    ref = client.post(url, json={"inputs": X[:6].tolist()}).json()["predictions"]
    r = client.post(url, content=npy_bytes(X[:6]), headers={"Content-Type": NPY, "Accept": NPY})
    assert r.status_code == 200
    np.testing.assert_allclose(np.load(io.BytesIO(r.content)), ref, rtol=1e-6)
    r = client.post(url, content=npy_bytes(X[:6]), headers={"Content-Type": NPY, "Accept": ARROW})
    assert r.status_code == 200
    np.testing.assert_allclose(pa.ipc.open_stream(r.content).read_all().column("prediction").to_pylist(), ref,
                               rtol=1e-6)


def test_binary_body_errors_name_the_problem(client, model):
    url = model["url"]

    def post(data, ctype, **headers):
        return client.post(url, content=data, headers={"Content-Type": ctype, **headers})

    cases = [
        (post(npy_bytes(np.zeros((3, 5), np.float32)), NPY), 422,
         "inputs must have shape (n, 4) (the model's input width), got (3, 5)"),
        (post(npy_bytes(np.array([{"a": 1}], dtype=object)), NPY), 422,
         "the .npy array must be numeric, got dtype object"),
        (post(npy_bytes(np.array([[1.0, 2.0, np.inf, 4.0]])), NPY), 422, "inputs[0][2] is not a finite number: inf"),
        (post(npy_bytes(np.zeros((3, 4), np.float32))[:-8], NPY), 422,
         "the .npy body is truncated: shape (3, 4) of float32 needs 48 bytes of data, got 40"),
        (post(b"f0,f1,f2,f3\n1,2,x,4\n", "text/csv"), 422,
         "CSV column 'f2' (column 2) must be numeric, got string"),
        (post(npy_bytes(model["X"]), NPY, Accept="text/html"), 406,
         "cannot answer in 'text/html': Accept one of application/json, application/x-npy, "
         "application/vnd.apache.arrow.stream"),
        (client.post("/v1/models/0123456789abcdef0123456789abcdef/predict", content=npy_bytes(model["X"]),
                     headers={"Content-Type": NPY}), 404, "model 0123456789abcdef0123456789abcdef not found"),
    ]
    for r, status, detail in cases:
        assert (r.status_code, r.json().get("detail")) == (status, detail), r.text
    r = post(b"not an arrow stream", ARROW)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("the body is not an Arrow IPC stream")
    r = post(b"PAR1garbage", "application/vnd.apache.parquet")
    assert r.status_code == 422
    assert r.json()["detail"].startswith("the body is not a Parquet file")
    r = post(b"\x93NUMPY garbage", NPY)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("the body is not a .npy file")


def test_missing_values_in_binary_bodies_are_imputed_like_json_nulls(client, model):
    url = model["url"]
    names = ["x0", "x1", "x2", "x3"]
    rows = [[1.0, 2.0, None, 4.0], [None, 0.5, 1.5, -1.0]]
    ref = client.post(url, json={"columns": names, "data": rows})
    assert ref.status_code == 200, ref.text
    X = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float32)
    table = pa.table({n: [r[j] for r in rows] for j, n in enumerate(names)})
    for ctype, data in ((NPY, npy_bytes(X)), (ARROW, arrow_bytes(table)),
                        ("text/csv", b"x0,x1,x2,x3\n1,2,,4\n,0.5,1.5,-1\n")):
        r = client.post(url, content=data, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == ref.json()["predictions"]
        np.testing.assert_allclose(r.json()["probabilities"], ref.json()["probabilities"], atol=1e-6)
