"""How text becomes values, the same way in every format and at upload and predict: string views, dictionary
columns, hexadecimal text, NA tokens, labels in Unicode NFC, row numbers from 1, binary files under a CSV name,
boolean JSON labels. Each by status code and values or ``detail``."""

from __future__ import annotations

import gzip
import io
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from service.datasets import tabular
from service.dialects import NA_TOKENS
from tests.service.helpers import mlp_spec
from tests.service.test_datasets_tabular import err, ok, stored, up

PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def arrow_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    feather.write_feather(table, buf, compression="uncompressed")
    return buf.getvalue()


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def up_table(client, table: pa.Table, fmt: str, **fields):
    data = parquet_bytes(table) if fmt == "parquet" else arrow_bytes(table)
    return up(client, data, f"t.{fmt}", "application/octet-stream", **fields)


def train(client, wait_job, dataset: dict, n_out: int) -> str:
    net = client.post("/v1/networks", json=mlp_spec(n_out, hidden=8)).json()
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": dataset["id"], "epochs": 3,
                                      "batch_size": 16, "seed": 0})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return job["model_id"]


def same_stored(app, a: dict, b: dict) -> None:
    assert a["columns"] == b["columns"] and a["classes"] == b["classes"]
    _, Xa, ya = stored(app, a["id"])
    _, Xb, yb = stored(app, b["id"])
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(ya, yb)


def plan_table(text_type: pa.DataType) -> pa.Table:
    rng = np.random.default_rng(0)
    n = 60
    return pa.table({"a": pa.array(rng.normal(size=n)),
                     "plan": pa.array(["pro", "free", "team"] * (n // 3), text_type),
                     "y": pa.array(["yes", "no"] * (n // 2), text_type)})


# -- 14: labels from text in Unicode NFC -------------------------------------------------------------------------

NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


def test_labels_in_nfc_and_nfd_are_one_class_in_every_format(app, client, make_dataset):
    labels = [NFC, NFD, "tea", "tea"] * 10
    csv = "a,y\n" + "".join(f"{i},{y}\n" for i, y in enumerate(labels))
    bodies = [ok(up(client, csv.encode())),
              ok(up_table(client, pa.table({"a": pa.array(range(40), pa.float64()), "y": labels}), "parquet")),
              make_dataset(client, [[float(i)] for i in range(40)], labels)]
    buf = io.BytesIO()
    np.savez(buf, X=np.arange(40, dtype=np.float32)[:, None], y=np.array(labels))
    bodies.append(ok(up(client, buf.getvalue(), "d.npz", "application/octet-stream")))
    for body in bodies:
        assert body["classes"] == [NFC, "tea"]
        _, _, y = stored(app, body["id"])
        assert y[:4].tolist() == [0, 0, 1, 1]


# -- 17: row numbers count from 1 --------------------------------------------------------------------------------

def test_a_target_too_large_for_float32_is_named_by_its_row_from_1(client):
    t = pa.table({"a": [1.0, 2.0, 3.0], "y": [1e39, 0.5, 0.25]})
    assert err(up_table(client, t, "parquet")) == "target column 'y': the value in row 1 is too large for float32"
    assert err(up(client, b"a,y\n1,0.5\n2,1e39\n3,0.25\n", task="regression")) == \
        "target column 'y': the value in row 2 is too large for float32"


# -- 19: binary files under a CSV name; boolean JSON labels -----------------------------------------------------

def test_json_boolean_labels_are_classes_as_from_an_npz(app, client):
    X = [[float(i)] for i in range(6)]
    body = client.post("/v1/datasets", json={"X": X, "y": [True, False, True, False, True, False]})
    body = ok(body)
    buf = io.BytesIO()
    np.savez(buf, X=np.array(X, dtype=np.float32), y=np.array([True, False] * 3))
    npz = ok(up(client, buf.getvalue(), "d.npz", "application/octet-stream"))
    assert body["classes"] == npz["classes"] == [False, True] and body["task"] == "classification"
    assert stored(app, body["id"])[2].tolist() == stored(app, npz["id"])[2].tolist() == [1, 0, 1, 0, 1, 0]
    assert err(client.post("/v1/datasets", json={"X": X[:2], "y": [True, 1]})) == \
        "y mixes booleans with other values; labels must be all booleans, all strings or all numbers"
