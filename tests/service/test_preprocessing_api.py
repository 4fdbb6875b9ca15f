"""Preprocessing through the API: the job body's `preprocessing`, models trained on mixed-type CSVs that predict by
records and columns/data, `input_schema`, Palmer penguins and MNIST end to end, non-finite outputs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import orjson
import palmerpenguins
import pytest

import core
from tests.service.helpers import mlp_spec
from tests.service.test_models import insert_model

PENGUINS_CSV = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"


def upload_csv(client, text: str, name: str = "data.csv", **fields) -> dict:
    r = client.post("/v1/datasets", files={"file": (name, text.encode(), "text/csv")}, data=fields)
    assert r.status_code == 201, r.text
    return r.json()


def train(client, wait_job, dataset: dict, n_out: int, timeout: float = 90.0, **body) -> dict:
    r = client.post("/v1/networks", json=mlp_spec(n_out, hidden=16))
    assert r.status_code == 201, r.text
    body = {"network_id": r.json()["id"], "dataset_id": dataset["id"], "epochs": 40, "batch_size": 16,
            "optimizer": {"type": "adam", "learning_rate": 0.01}, **body}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"], timeout=timeout)
    assert job["status"] == "succeeded", job
    return job


def churn_csv(n: int = 300, seed: int = 0) -> str:
    """age (blanks), plan (text, NA), region (text), label yes iff plan is pro or age > 50."""
    rng = np.random.default_rng(seed)
    lines = ["age,plan,region,label"]
    for _ in range(n):
        age = int(rng.integers(18, 80))
        plan = str(rng.choice(["basic", "pro", "team"]))
        region = str(rng.choice(["eu", "us"]))
        label = "yes" if plan == "pro" or age > 50 else "no"
        age_s = "" if rng.random() < 0.05 else str(age)
        plan_s = "NA" if rng.random() < 0.05 else plan
        lines.append(f"{age_s},{plan_s},{region},{label}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def churn_model(client, wait_job):
    ds = upload_csv(client, churn_csv(), "churn.csv")
    job = train(client, wait_job, ds, 2, validation_split=0.2)
    return job["model_id"]


def predict(client, model_id: str, body: dict):
    return client.post(f"/v1/models/{model_id}/predict", json=body)


# -- the job body ----------------------------------------------------------------------------------------------
def test_job_body_preprocessing_defaults_and_standardize_mapping(client, make_network, make_dataset):
    net = make_network(client, mlp_spec(2))
    ds = make_dataset(client, [[0.0, 1.0], [1.0, 0.0]] * 4, [0, 1] * 4)
    base = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1}
    r = client.post("/v1/jobs", json=base)
    assert r.status_code == 202
    assert r.json()["params"]["preprocessing"] == {
        "numeric": {"impute": "mean", "fill_value": None, "add_indicator": False, "scale": "standard"},
        "categorical": {"encode": "onehot", "max_categories": None}}
    r = client.post("/v1/jobs", json={**base, "standardize": False})
    assert r.status_code == 202 and r.json()["params"]["preprocessing"]["numeric"]["scale"] == "none"
    r = client.post("/v1/jobs", json={**base, "preprocessing": {"numeric": {"scale": "minmax"}}})
    assert r.status_code == 202 and r.json()["params"]["standardize"] is True
    r = client.post("/v1/jobs", json={**base, "standardize": False,
                                      "preprocessing": {"numeric": {"scale": "standard"}}})
    assert r.status_code == 422
    assert "standardize=false contradicts preprocessing.numeric.scale='standard'" in r.json()["detail"][0]["msg"]
    for null in ({"preprocessing": None}, {"optimizer": None}):      # null: the default, as if left out
        r = client.post("/v1/jobs", json={**base, **null})
        assert r.status_code == 202, r.text
        assert r.json()["params"]["preprocessing"]["numeric"]["scale"] == "standard"
        assert r.json()["params"]["optimizer"] == {"type": "adam", "learning_rate": 0.002, "beta1": 0.9,
                                                   "beta2": 0.999, "eps": 1e-08}
    r = client.post("/v1/jobs", json={**base, "preprocessing": {"numeric": {"impute": "mode"}}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "preprocessing", "numeric", "impute"]
    r = client.post("/v1/jobs", json={**base, "preprocessing": {"categorical": {"max_categories": 0}}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "preprocessing", "categorical", "max_categories"]


# -- a mixed-type CSV, predict by name ---------------------------------------------------------------------------
def test_model_shows_input_schema(client, churn_model):
    r = client.get(f"/v1/models/{churn_model}")
    assert r.status_code == 200
    schema = r.json()["input_schema"]
    assert [(c["name"], c["type"]) for c in schema] == [("age", "numeric"), ("plan", "categorical"),
                                                         ("region", "categorical")]
    age, plan, region = schema
    assert age["missing"]["strategy"] == "mean" and 18 <= age["missing"]["fill_value"] <= 80
    assert age["scale"]["method"] == "standard"
    assert plan["categories"][:3] == ["basic", "pro", "team"] and plan["unseen"] == "all_zero"
    assert region["categories"] == ["eu", "us"]


def test_predict_by_records_with_null_and_unseen_category(client, churn_model):
    records = [{"age": 70, "plan": "basic", "region": "eu"}, {"age": 20, "plan": "pro", "region": "us"},
               {"age": 20, "plan": "basic", "region": "us"}, {"age": None, "plan": "pro", "region": "mars"},
               {"region": "eu", "plan": None, "age": 75}]
    r = predict(client, churn_model, {"records": records})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["predictions"][:3] == ["yes", "yes", "no"]
    assert len(out["probabilities"]) == 5
    assert all(np.isfinite(p).all() and abs(sum(p) - 1) < 1e-5 for p in out["probabilities"])
    # the same rows in the split orientation, columns in another order, give the same answer
    cols = ["region", "age", "plan"]
    r2 = predict(client, churn_model, {"columns": cols, "data": [[rec.get(c) for c in cols] for rec in records]})
    assert r2.status_code == 200 and r2.json() == out
    # pandas' df.to_json(orient="split") as it comes, with its index (not used)
    import pandas as pd
    split = orjson.loads(pd.DataFrame(records, columns=cols).to_json(orient="split"))
    assert set(split) == {"columns", "index", "data"}
    r2 = predict(client, churn_model, split)
    assert r2.status_code == 200 and r2.json() == out
    # a column left out of a record is missing, filled as trained
    r3 = predict(client, churn_model, {"records": [{"plan": "pro", "region": "eu"}]})
    assert r3.status_code == 200 and r3.json()["predictions"] == ["yes"]


BAD_BODIES = [
    ({"records": [{"age": 30, "plann": "pro"}]}, "unknown column 'plann'; the model's columns are 'age', 'plan', "
                                                 "'region'"),
    ({"records": [{"age": 30}, {"age": "old"}]}, "row 2, column 'age': expected a number, got 'old'"),
    ({"columns": ["age", "age"], "data": [[1, 2]]}, "column 'age' is given twice"),
    ({"columns": ["age", "plan"], "data": [[1]]}, "data[0] has 1 value(s) but columns lists 2 names"),
    ({"records": []}, "records must be a non-empty list of objects {column: value}"),
    ({"records": [{"age": 30}], "inputs": [[1]]}, "fields ['inputs', 'records'] do not go together"),
    ({"columns": ["age"], "data": [[1], [2]], "index": [0]}, "index must be a list with one label per row of data "
                                                            "(2); it is not used, so it can be left out"),
    ({"records": [{"age": 30, " age": 31}]}, "records[0]: column 'age' is given twice"),
    ({}, "the body names no rows"),
    ({"inputs": [[30, 1, 0]]}, "inputs: this model has non-numeric columns ('plan' (categorical), 'region' "
                               "(categorical)); send"),
]


def test_predict_by_name_422_names_the_problem(client, churn_model):
    for body, detail in BAD_BODIES:
        r = predict(client, churn_model, body)
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(detail), (body, r.json())


def test_missing_column_of_a_model_without_imputation_is_422(app, client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2)).astype(np.float32)
    net = core.Network.from_spec(mlp_spec(1, loss="mse"))
    core.fit(net, X, X[:, 0] + X[:, 1], epochs=2,
             preprocessing={"columns": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}],
                            "numeric": {"impute": None}})
    insert_model(app, net, model_id="n" * 32, task="regression")
    r = predict(client, "n" * 32, {"records": [{"a": 1.0}]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("missing column 'b': the model was trained without imputation")
    r = predict(client, "n" * 32, {"records": [{"a": 1.0, "b": 2.0}]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    for body, ctype in ((b"a,b\n1,2\n3,\n", "text/csv"), (b'{"inputs": [[1, 2], [3, 4], [5, 1e39]]}', None)):
        r = client.post(f"/v1/models/{'n' * 32}/predict", content=body, headers={"Content-Type": ctype or "application/json"})
        assert r.status_code == 422
    r = client.post(f"/v1/models/{'n' * 32}/predict", content=b"a,b\n1,2\n3,\n", headers={"Content-Type": "text/csv"})
    assert r.json()["detail"] == ("row 2, column 'b': a missing value (NaN), but the model was trained without "
                                  "imputation for this column")


def test_non_finite_output_is_422_naming_the_row(app, client):
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    core.fit(net, np.ones((4, 3), np.float32), np.ones(4, np.float32), epochs=1)     # no preprocessing
    net.layers[0].params["W"][...] = 10.0
    insert_model(app, net, model_id="f" * 32, task="regression")
    r = predict(client, "f" * 32, {"inputs": [[1.0, 2.0, 3.0], [3e38, 3e38, 3e38]]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("row 2: the model's output is not finite for this input")


def test_validation_data_set_with_other_categories_is_aligned(client, wait_job):
    train_ds = upload_csv(client, churn_csv(200, 1), "train.csv")
    text = "age,plan,region,label\n30,pro,eu,yes\n25,basic,eu,no\n60,enterprise,eu,yes\n22,basic,eu,no\n"
    val_ds = upload_csv(client, text, "val.csv")
    job = train(client, wait_job, train_ds, 2, epochs=5, validation_dataset_id=val_ds["id"])
    assert np.isfinite(job["metrics"]["val_loss"])


# -- real data: Palmer penguins and MNIST ------------------------------------------------------------------------
def test_penguins_end_to_end_predict_by_records(client, wait_job):
    text = PENGUINS_CSV.read_text()
    ds = upload_csv(client, text, "penguins.csv", target="species", drop_missing_target="true")
    job = train(client, wait_job, ds, 3, validation_split=0.2, epochs=60)
    assert job["metrics"]["val_accuracy"] >= 0.9
    model = client.get(f"/v1/models/{job['model_id']}").json()
    kinds = {c["name"]: c["type"] for c in model["input_schema"]}
    assert kinds["island"] == "categorical" and kinds["sex"] == "categorical"
    assert kinds["bill_length_mm"] == "numeric"
    records = [
        {"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181,
         "body_mass_g": 3750, "sex": "male", "year": 2007},
        {"island": "Atlantis", "bill_length_mm": 46.5, "bill_depth_mm": 14.8, "flipper_length_mm": 217,
         "body_mass_g": 5200, "sex": None, "year": 2008},            # unseen island, missing sex
        {"island": "Dream", "bill_length_mm": 50.9, "bill_depth_mm": 19.1, "flipper_length_mm": None,
         "body_mass_g": 3550, "sex": "male", "year": 2009},
    ]
    r = predict(client, job["model_id"], {"records": records})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ["Adelie", "Gentoo", "Chinstrap"]


def test_mnist_with_job_defaults(client, wait_job):
    images = gzip.open(MNIST / "t10k-images-idx3-ubyte.gz").read()
    labels = gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz").read()
    X = np.frombuffer(images, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, X=X[:4000], y=y[:4000])
    r = client.post("/v1/datasets", files={"file": ("mnist.npz", buf.getvalue(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    ds = r.json()
    r = client.post("/v1/networks", json={"layers": [{"type": "dense", "units": 64, "activation": "relu"},
                                                     {"type": "dense", "units": 10, "activation": "softmax"}],
                                          "loss": "cross_entropy"})
    job_r = client.post("/v1/jobs", json={"network_id": r.json()["id"], "dataset_id": ds["id"], "epochs": 4})
    assert job_r.status_code == 202, job_r.text
    job = wait_job(client, job_r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    held_out = X[8000:9000]
    r = predict(client, job["model_id"], {"inputs": held_out.tolist()})
    assert r.status_code == 200
    out = r.json()
    proba = np.array(out["probabilities"])
    assert np.isfinite(proba).all()
    accuracy = float(np.mean(np.array(out["predictions"]) == y[8000:9000]))
    assert accuracy >= 0.88, accuracy
    schema = client.get(f"/v1/models/{job['model_id']}").json()["input_schema"]
    assert len(schema) == 784 and {c["scale"]["method"] for c in schema} == {"standard"}


def test_validation_data_set_with_other_column_types_is_422(client, make_network, wait_job):
    train_ds = upload_csv(client, churn_csv(40, 2), "train.csv")
    val_ds = upload_csv(client, "age,plan,region,label\n30,1,eu,yes\n25,2,us,no\n", "val.csv")
    net = make_network(client, mlp_spec(2))
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": train_ds["id"],
                                      "validation_dataset_id": val_ds["id"]})
    assert r.status_code == 422
    assert r.json()["detail"] == (f"validation_dataset_id: column 'plan' of data set {val_ds['id']} is numeric, "
                                  "the training data set takes it as categorical: no category is a number ('basic', "
                                  "'pro', 'team')")
    # a column with no value at all is missing whatever its type (as in batch scoring): accepted
    empty = upload_csv(client, "age,plan,region,label\n30,,eu,yes\n25,,us,no\n", "val_empty.csv")
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": train_ds["id"],
                                      "validation_dataset_id": empty["id"], "epochs": 2})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded" and job["metrics"]["val_loss"] is not None, job


def test_validation_data_set_columns_are_matched_by_name(client, wait_job):
    """The same validation rows with their columns in another order (and the target elsewhere) give the same
    validation metrics, epoch by epoch; a validation set without one of the training columns is a 422."""
    train_ds = upload_csv(client, churn_csv(200, 1), "train.csv")
    text = churn_csv(60, 2)
    lines = [ln.split(",") for ln in text.splitlines()]
    shuffled = "\n".join(",".join((r[2], r[3], r[0], r[1])) for r in lines) + "\n"   # region,label,age,plan
    same = upload_csv(client, text, "val.csv")
    other = upload_csv(client, shuffled, "val2.csv", target="label")
    a = train(client, wait_job, train_ds, 2, validation_dataset_id=same["id"], epochs=3, seed=0)
    b = train(client, wait_job, train_ds, 2, validation_dataset_id=other["id"], epochs=3, seed=0)
    ha = client.get(f"/v1/jobs/{a['id']}/metrics").json()["items"]
    hb = client.get(f"/v1/jobs/{b['id']}/metrics").json()["items"]
    assert [m["val_loss"] for m in ha] == [m["val_loss"] for m in hb] and len(ha) == 3
    lacking = upload_csv(client, "age,plan,regio,label\n30,pro,eu,yes\n25,basic,us,no\n", "val3.csv")
    r = client.post("/v1/jobs", json={"network_id": a["network_id"], "dataset_id": train_ds["id"],
                                      "validation_dataset_id": lacking["id"]})
    assert r.status_code == 422
    assert r.json()["detail"] == (f"validation_dataset_id: data set {lacking['id']} has no column 'region', which "
                                  "the training data set has (columns are matched by name)")
    for csv, which in (("age,plan,region,extra,label\n30,pro,eu,1,yes\n25,basic,us,2,no\n",
                        "column(s) ['extra'] are not in the training data set"),
                       ("age,plan,label\n30,pro,yes\n25,basic,no\n", "it has no column(s) ['region']")):
        odd = upload_csv(client, csv, "val4.csv")
        r = client.post("/v1/jobs", json={"network_id": a["network_id"], "dataset_id": train_ds["id"],
                                          "validation_dataset_id": odd["id"]})
        assert r.status_code == 422
        assert r.json()["detail"] == (f"validation_dataset_id: data set {odd['id']} has {odd['n_features']} "
                                      f"features, the training data set 3 ({which})")


def test_names_and_text_compare_trimmed_and_in_nfc_on_upload_and_predict(client, wait_job, churn_model):
    """A decomposed 'café' (as macOS writes it) names the composed column and is the composed category; ' age ' in
    a CSV header names 'age'; a blank cell is missing in a CSV body and in records, as at upload."""
    import unicodedata
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    text = f"{nfc},drink,label\n" + "".join(f"{i % 7},{[nfc, 'tea'][i % 2]},{['yes', 'no'][i % 2]}\n" for i in range(80))
    ds = upload_csv(client, text, "cafe.csv")
    assert ds["feature_names"] == [nfc, "drink"]
    nfd_upload = upload_csv(client, unicodedata.normalize("NFD", text), "cafe-nfd.csv")
    assert nfd_upload["feature_names"] == [nfc, "drink"] and nfd_upload["columns"][1]["categories"] == [nfc, "tea"]
    job = train(client, wait_job, ds, 2, epochs=5)
    ref = predict(client, job["model_id"], {"records": [{nfc: 1, "drink": nfc}]}).json()
    for record in ({nfd: 1, "drink": nfd}, {f" {nfc} ": 1, "drink": f" {nfd} "}):
        r = predict(client, job["model_id"], {"records": [record]})
        assert (r.status_code, r.json()) == (200, ref), r.text
    r = client.post(f"/v1/models/{job['model_id']}/predict", content=f" {nfd} , drink \n1,{nfd}\n".encode(),
                    headers={"content-type": "text/csv"})
    assert (r.status_code, r.json()) == (200, ref), r.text
    # a blank cell: missing (imputed), the same answer as null
    null = predict(client, churn_model, {"records": [{"age": None, "plan": "pro", "region": None}]}).json()
    assert predict(client, churn_model, {"records": [{"age": "  ", "plan": "pro", "region": " "}]}).json() == null
    r = client.post(f"/v1/models/{churn_model}/predict", content=b"age,plan,region\n   ,pro, NA \n",
                    headers={"content-type": "text/csv"})
    assert (r.status_code, r.json()) == (200, null), r.text


def test_a_typed_parquet_file_that_trains_also_predicts_as_a_body(client, wait_job):
    """Date, timestamp, duration and decimal columns are typed in a Parquet or Arrow predict body as the upload
    typed them (dates as their text categories, decimals as numbers): the rows of the training file predict."""
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 60
    table = pa.table({
        "d": pa.array([datetime.date(2024, 1, 1 + i % 3) for i in range(n)]),
        "ts": pa.array([datetime.datetime(2024, 1, 1 + i % 2) for i in range(n)], pa.timestamp("us")),
        "dur": pa.array([datetime.timedelta(seconds=i % 4) for i in range(n)], pa.duration("us")),
        "price": pa.array([decimal.Decimal(f"{i % 10}.25") for i in range(n)], pa.decimal128(10, 2)),
        "label": pa.array(["yes" if i % 3 == 0 else "no" for i in range(n)])})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    r = client.post("/v1/datasets", files={"file": ("typed.parquet", buf.getvalue())})
    assert r.status_code == 201, r.text
    assert [c["type"] for c in r.json()["columns"]] == ["categorical", "categorical", "categorical", "numeric"]
    model = train(client, wait_job, r.json(), 2, epochs=3)["model_id"]
    schema = {c["name"]: c for c in client.get(f"/v1/models/{model}").json()["input_schema"]}
    rows = table.slice(0, 3)
    body = io.BytesIO()
    pq.write_table(rows, body)
    r = client.post(f"/v1/models/{model}/predict", content=body.getvalue(),
                    headers={"content-type": "application/vnd.apache.parquet"})
    assert r.status_code == 200, r.text
    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, rows.schema) as w:
        w.write_table(rows)
    arrow = client.post(f"/v1/models/{model}/predict", content=stream.getvalue(),
                        headers={"content-type": "application/vnd.apache.arrow.stream"})
    assert (arrow.status_code, arrow.json()) == (200, r.json())
    records = [{"d": str(x["d"]), "ts": schema["ts"]["categories"][0] if x["ts"].day == 1 else
                schema["ts"]["categories"][1], "dur": schema["dur"]["categories"][i % 4], "price": float(x["price"])}
               for i, x in enumerate(rows.to_pylist())]
    assert predict(client, model, {"records": records}).json() == r.json()


def test_parameter_limit_counts_one_hot_columns(tmp_path, make_network):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    text = "code,label\n" + "".join(f"c{i},{'yes' if i % 2 else 'no'}\n" for i in range(200))
    with TestClient(create_app(Settings(data_dir=tmp_path / "d", workers=0, max_params=1000))) as client:
        ds = upload_csv(client, text, "codes.csv")
        net = make_network(client, mlp_spec(2, hidden=8))
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"]})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("network_id: with 200 input features the network has 1626 parameters")
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"],
                                          "preprocessing": {"categorical": {"max_categories": 50}}})
        assert r.status_code == 202, r.text


def test_fill_value_without_constant_imputation_is_422(client, make_network, make_dataset):
    net = make_network(client, mlp_spec(2))
    ds = make_dataset(client, [[0.0, 1.0], [1.0, 0.0]] * 4, [0, 1] * 4)
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"],
                                      "preprocessing": {"numeric": {"fill_value": -1}}})
    assert r.status_code == 422
    assert "fill_value is only used with impute='constant', not 'mean'" in r.json()["detail"][0]["msg"]
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1,
                                      "preprocessing": {"numeric": {"impute": "constant", "fill_value": -1}}})
    assert r.status_code == 202


def test_boolean_column_trains_and_predicts_by_record(client, wait_job):
    rng = np.random.default_rng(3)
    lines = ["x,active,label"]
    for _ in range(200):
        x, active = float(rng.normal()), bool(rng.random() < 0.5)
        cell = "" if rng.random() < 0.05 else ("true" if active else "false")
        lines.append(f"{x:.3f},{cell},{'yes' if active else 'no'}")
    ds = upload_csv(client, "\n".join(lines) + "\n", "flags.csv")
    job = train(client, wait_job, ds, 2)
    schema = client.get(f"/v1/models/{job['model_id']}").json()["input_schema"]
    assert schema[1]["name"] == "active" and schema[1]["type"] == "boolean"
    assert schema[1]["missing"]["strategy"] == "most_frequent"
    r = predict(client, job["model_id"], {"records": [{"x": 0.1, "active": True}, {"x": 0.1, "active": False},
                                                      {"x": 0.1, "active": None}]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][:2] == ["yes", "no"]
    r = predict(client, job["model_id"], {"records": [{"x": 0.1, "active": "maybe"}]})
    assert r.status_code == 422
    assert r.json()["detail"] == "row 1, column 'active': expected true or false, got 'maybe'"


# -- one reading of raw values on every predict path (zip codes, whitespace, the target and ignored columns) ------
ZIPS = ["01234", "11111", "98765"]


def zip_csv(n: int = 300) -> str:
    """id (ignored at upload), zip (categorical=zip; leading zero), plan (text written with spaces), x (numeric),
    g (categorical=g, written 1.5 / 2.0 / 3), label: yes iff zip is 01234."""
    rng = np.random.default_rng(5)
    lines = ["id,zip,plan,x,g,label"]
    for i in range(n):
        z = ZIPS[i % 3]
        lines.append(f"C{i},{z}, {['basic', 'pro'][i % 2]} ,{rng.normal():.3f},{['1.5', '2.0', '3'][i % 3]},"
                     f"{'yes' if z == '01234' else 'no'}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def zip_model(tmp_path_factory):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.service.helpers import wait_job

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("zips") / "data", workers=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        ds = upload_csv(c, zip_csv(), "zips.csv", categorical="zip,g", ignore="id")
        cats = {col["name"]: col.get("categories") for col in ds["columns"]}
        assert cats["zip"] == ZIPS and cats["plan"] == ["basic", "pro"] and cats["g"] == ["1.5", "2.0", "3"]
        job = train(c, wait_job, ds, 2, epochs=30)
        yield c, job["model_id"]


def _proba(r) -> list:
    assert r.status_code == 200, r.text
    return r.json()["probabilities"]


def _arrow(table) -> bytes:
    import pyarrow as pa
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_categorical_values_read_as_written_on_every_path(zip_model):
    import pyarrow as pa
    c, mid = zip_model
    url = f"/v1/models/{mid}/predict"
    ref = _proba(c.post(url, json={"records": [{"zip": "01234", "plan": "pro", "x": 0.5, "g": "2.0"}]}))
    unseen = _proba(c.post(url, json={"records": [{"zip": "00000", "plan": "pro", "x": 0.5, "g": "2.0"}]}))
    assert unseen != ref
    same = [
        c.post(url, json={"records": [{"zip": 1234, "plan": " pro ", "x": 0.5, "g": 2}]}),       # numbers, spaces
        c.post(url, json={"records": [{"zip": 1234.0, "plan": "pro\t", "x": 0.5, "g": 2.0}]}),
        c.post(url, json={"columns": ["g", "x", "plan", "zip"], "data": [[2, 0.5, "  pro", 1234]]}),
        c.post(url, content=b"zip,plan,x,g\n01234, pro ,0.5,2.0\n", headers={"Content-Type": "text/csv"}),
        c.post(url, content=b"zip;plan;x;g\n01234;pro;0.5;2.0\n", headers={"Content-Type": "text/csv"}),
        c.post(url, content="zip\tplan\tx\tg\n01234\tpro\t0.5\t2.0\n".encode("utf-16"),
               headers={"Content-Type": "text/csv"}),
        c.post(url, content=b"\xef\xbb\xbfzip|plan|x|g\n\"01234\"|\" pro\"|0.5|2.0\n", headers={"Content-Type": "text/csv"}),
        c.post(url, content=_arrow(pa.table({"zip": [1234], "plan": [" pro "], "x": [0.5], "g": [2.0]})),
               headers={"Content-Type": "application/vnd.apache.arrow.stream"}),
    ]
    for r in same:
        assert _proba(r) == ref
    inv = f"/v1/models/{mid}/invocations"
    for body in ({"dataframe_split": {"columns": ["zip", "plan", "x", "g"], "data": [[1234, " pro", 0.5, 2]]}},
                 {"dataframe_records": [{"zip": "01234 ", "plan": "pro", "x": 0.5, "g": "2.0"}]},
                 {"instances": [{"zip": 1234, "plan": "pro", "x": 0.5, "g": 2}]}):
        r = c.post(inv, json=body)
        assert r.status_code == 200 and r.json() == {"predictions": ["yes"]}, (body, r.text)
    r = c.post(inv, content=b"zip,plan,x,g\n01234, pro ,0.5,2.0\n", headers={"Content-Type": "text/csv"})
    assert r.json() == {"predictions": ["yes"]}
    # text is never read as a number: 1234 written as text is not the category 01234
    assert _proba(c.post(url, json={"records": [{"zip": "1234", "plan": "pro", "x": 0.5, "g": "2.0"}]})) == unseen
    # a CSV body's header names its columns trimmed, and a spaced ' zip ' is still read as text: 1234.0 is unseen
    for body, want in ((b" zip ,plan,x,g\n1234.0,pro,0.5,2.0\n", unseen),
                       (b" zip ,plan,x,g\n01234,pro,0.5,2.0\n", ref)):
        assert _proba(c.post(url, content=body, headers={"Content-Type": "text/csv"})) == want, body


def test_target_and_ignored_columns_are_accepted_and_dropped(zip_model):
    import pyarrow as pa
    c, mid = zip_model
    url = f"/v1/models/{mid}/predict"
    row = {"zip": "01234", "plan": "pro", "x": 0.5, "g": "2.0"}
    ref = _proba(c.post(url, json={"records": [row]}))
    training_rows = "id,zip,plan,x,g,label\nC0,01234, pro ,0.5,2.0,yes\n".encode()
    for r in (c.post(url, json={"records": [{"id": "C9", **row, "label": "no"}]}),
              c.post(url, json={"columns": ["label", *row, "id"], "data": [["no", *row.values(), "C9"]]}),
              c.post(url, content=training_rows, headers={"Content-Type": "text/csv"}),
              c.post(url, content=_arrow(pa.table({"id": ["C9"], **{k: [v] for k, v in row.items()},
                                                   "label": ["no"]})),
                     headers={"Content-Type": "application/vnd.apache.arrow.stream"})):
        assert _proba(r) == ref
    inv = f"/v1/models/{mid}/invocations"
    for r in (c.post(inv, json={"dataframe_split": {"columns": ["id", *row, "label"],
                                                    "data": [["C9", *row.values(), "no"]]}}),
              c.post(inv, content=training_rows, headers={"Content-Type": "text/csv"})):
        assert r.status_code == 200 and r.json() == {"predictions": ["yes"]}, r.text
    r = c.post(url, json={"records": [{**row, "zipp": 1}]})
    assert (r.status_code, r.json()["detail"]) == (
        422, "unknown column 'zipp'; the model's columns are 'zip', 'plan', 'x', 'g'")


def test_csv_body_structure_errors_name_the_line(zip_model):
    c, mid = zip_model
    for path in ("predict", "invocations"):
        url = f"/v1/models/{mid}/{path}"
        for body, problem in (
                (b'zip,plan,x,g\n01234,"pro,0.5,2\n11111,basic,0.1,3\n',
                 'line 2: unterminated quote: a field opens with " and is never closed'),
                (b'zip,plan,x,g\n01234,pro,0.5,2\n01234,"pro"x,0.5,2\n', "line 3: ',' expected after '\"'"),
                (b"zip,plan,x,g\n01234,pro,0.5,2\n01234,pro,0.5,2,9\n",
                 "line 3: expected 4 columns (as in the header), found 5"),
                (b"zip;plan;x;g\n01234;pro;0.5;2\n\n11111;basic;0.1\n",
                 "line 4: expected 4 columns (as in the header), found 3")):
            r = c.post(url, content=body, headers={"Content-Type": "text/csv"})
            assert (r.status_code, r.json()["detail"]) == (422, f"the CSV body cannot be read: {problem}"), body


def test_number_for_a_category_and_values_of_the_wrong_type_name_row_and_column(zip_model):
    c, mid = zip_model
    url = f"/v1/models/{mid}/predict"
    r = c.post(url, json={"records": [{"zip": "01234"}, {"zip": ["01234"]}]})
    assert (r.status_code, r.json()["detail"]) == (422, "row 2, column 'zip': expected a category (text), got "
                                                        "['01234']")
    r = c.post(url, content=b"zip,plan,x,g\n01234,pro,old,2\n", headers={"Content-Type": "text/csv"})
    assert (r.status_code, r.json()["detail"]) == (422, "CSV: row 1, column 'x': expected a number, got 'old'")
    # the cell that is no number is named, not the first cell of its column (was: row 1, got '0.5')
    for body, want in ((b"zip,plan,x,g\n01234,pro,0.5,2\n01234,pro,NA,2\n01234,pro, old ,2\n", "row 3, column "
                        "'x': expected a number, got ' old '"),
                       (b"zip;plan;x;g\n01234;pro;0,5;2\n01234;pro;-;2\n01234;pro;abc;2\n", "row 3, column 'x': "
                        "expected a number, got 'abc'")):
        for path in ("predict", "invocations"):
            r = c.post(f"/v1/models/{mid}/{path}", content=body, headers={"Content-Type": "text/csv"})
            assert (r.status_code, r.json()["detail"]) == (422, f"CSV: {want}"), (path, body)


def test_fill_value_beyond_float32_is_422_and_a_constant_column_contributes_0(client, wait_job, make_network):
    rng = np.random.default_rng(1)
    lines = ["a,allna,big,label"] + [f"{rng.normal():.3f},,1e20,{'yes' if i % 2 else 'no'}" for i in range(80)]
    ds = upload_csv(client, "\n".join(lines) + "\n", "consts.csv")
    net = make_network(client, mlp_spec(2))
    for fv in (1e39, -3.5e38):
        r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 1,
                                          "preprocessing": {"numeric": {"impute": "constant", "fill_value": fv}}})
        assert r.status_code == 422
        err = r.json()["detail"][0]
        assert err["loc"] == ["body", "preprocessing", "numeric", "fill_value"]
        assert err["msg"] == f"Value error, must be a finite number within float32's range (about 3.4e38), got {fv!r}"
    job = train(client, wait_job, ds, 2, epochs=3,
                preprocessing={"numeric": {"impute": "constant", "fill_value": 1e30}})
    schema = {col["name"]: col for col in client.get(f"/v1/models/{job['model_id']}").json()["input_schema"]}
    for name in ("allna", "big"):        # constant in training: the center is the value itself, as is the clip
        scale = schema[name]["scale"]
        assert scale["clip"] == [scale["center"], scale["center"]] and scale["scale"] == 1.0, scale
    assert job["metrics"]["train_loss"] < 1.0
    mid = job["model_id"]
    base = _proba(predict(client, mid, {"records": [{"a": 0.3}]}))
    for other in ({"a": 0.3, "allna": -5.0, "big": 1.0}, {"a": 0.3, "allna": 3e38, "big": -3e38}):
        assert _proba(predict(client, mid, {"records": [other]})) == base


def test_predict_trims_category_text_exactly_as_the_upload_does():
    import pyarrow as pa
    import pyarrow.compute as pc
    chars = [chr(i) for i in range(0x3001)]
    values = [f"{ch}x{ch}" for ch in chars]
    uploaded = pc.utf8_trim_whitespace(pa.array(values)).to_pylist()        # what the upload stores
    p = core.Preprocessor([{"name": "c", "type": "categorical", "categories": ["x"]}]).fit(np.array([[0.0]]))
    codes = p.matrix_from_columns(["c"], [[v] for v in values])[:, 0]
    assert [u == "x" for u in uploaded] == (codes == 0).tolist()
    assert (codes == 0).sum() > 20                                              # tabs, newlines, NBSP, ...
