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
import pytest

from service.datasets import tabular
from service.dialects import NA_TOKENS
from tests.service.helpers import mlp_spec
from tests.service.test_datasets_tabular import err, ok, stored, up
from tests.service.test_predict_formats import arrow_bytes as arrow_stream
from tests.service.test_predict_formats import parquet_bytes

PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"


def arrow_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    feather.write_feather(table, buf, compression="uncompressed")
    return buf.getvalue()


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


# -- 10: string views (polars' Utf8View) are text -------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_string_view_columns_are_read_as_text(app, client, fmt):
    plain = ok(up_table(client, plan_table(pa.string()), fmt))
    view = ok(up_table(client, plan_table(pa.string_view()), fmt))
    assert view["classes"] == ["no", "yes"]
    assert view["columns"][1]["type"] == "categorical"
    assert view["columns"][1]["categories"] == ["free", "pro", "team"]
    same_stored(app, plain, view)


def test_binary_view_column_is_a_clear_422(client):
    t = pa.table({"a": [1.0, 2.0], "blob": pa.array([b"x", b"y"], pa.binary_view()), "y": ["p", "q"]})
    assert err(up_table(client, t, "arrow")) == ("column 2 ('blob') has type binary_view, which is not numeric, "
                                                 "boolean or text; drop it with the form field ignore=blob")
    assert err(up_table(client, t.select(["a", "blob"]), "arrow")) == (
        "target column 'blob' has type binary_view; it must hold numbers, booleans, text or dates")


def test_string_view_bodies_predict_as_string_bodies(app, client, wait_job):
    ds = ok(up_table(client, plan_table(pa.string()), "parquet"))
    model = train(client, wait_job, ds, 2)
    rows = pa.table({"a": [0.5, -0.5, 1.0], "plan": ["pro", "free", "unseen"]})
    view = pa.table({"a": [0.5, -0.5, 1.0], "plan": pa.array(["pro", "free", "unseen"], pa.string_view())})
    answers = []
    for t in (rows, view):
        for body, ctype in ((parquet_bytes(t), PARQUET), (arrow_stream(t), ARROW)):
            r = client.post(f"/v1/models/{model}/predict", content=body, headers={"content-type": ctype})
            assert r.status_code == 200, r.text
            answers.append(r.json())
    assert all(a == answers[0] for a in answers)


# -- 11: a dictionary-encoded column is typed as its values, in Arrow and in Parquet ------------------------------

def test_dictionary_columns_are_typed_as_their_values_in_both_formats(app, client):
    n = 40
    ints = pa.DictionaryArray.from_arrays(pa.array([0, 1] * (n // 2), pa.int8()), pa.array([10, 20]))
    text = pa.DictionaryArray.from_arrays(pa.array([0, 1] * (n // 2), pa.int8()), pa.array(["lo", "hi"]))
    t = pa.table({"a": pa.array(np.arange(n, dtype=np.float64)), "c": ints, "d": text,
                  "y": pa.array(["p", "q", "q", "p"] * (n // 4))})
    a = ok(up_table(client, t, "arrow"))
    p = ok(up_table(client, t, "parquet"))
    same_stored(app, a, p)
    cols = {c["name"]: c for c in a["columns"]}
    assert cols["c"]["type"] == "numeric" and (cols["c"]["min"], cols["c"]["max"]) == (10.0, 20.0)
    assert cols["d"]["type"] == "categorical" and cols["d"]["categories"] == ["hi", "lo"]
    _, X, _ = stored(app, a["id"])
    assert X[:4, 1].tolist() == [10.0, 20.0, 10.0, 20.0] and X[:2, 2].tolist() == [1.0, 0.0]
    # the form field categorical still makes a numeric dictionary column categorical, in both formats
    a = ok(up_table(client, t, "arrow", categorical="c"))
    p = ok(up_table(client, t, "parquet", categorical="c"))
    same_stored(app, a, p)
    assert a["columns"][1]["categories"] == ["10", "20"]


# -- 12: hexadecimal text stays text ------------------------------------------------------------------------------

def test_hex_text_is_text_in_features_and_target(app, client):
    rows = [f"{v},{i % 2},{'0x10' if i == 3 else i}" for i, v in enumerate(range(20, 40))]
    body = ok(up(client, ("n,k,y\n" + "\n".join(rows) + "\n").encode()))
    assert "0x10" in body["classes"]                        # the target: text, as before
    rows = [f"{'0x10' if i == 3 else v},{i % 2},{'yes' if i % 2 else 'no'}" for i, v in enumerate(range(20, 40))]
    body = ok(up(client, ("n,k,y\n" + "\n".join(rows) + "\n").encode()))
    n = body["columns"][0]
    assert n["type"] == "categorical" and "0x10" in n["categories"] and "16" not in n["categories"]
    ids = ok(up(client, ("id,x,y\n" + "".join(f"0x{i:02X},{i},{'ab'[i % 2]}\n" for i in range(30))).encode()))
    assert ids["columns"][0]["type"] == "categorical" and ids["columns"][0]["categories"][:2] == ["0x00", "0x01"]
    assert ids["columns"][1]["type"] == "numeric"


def test_hex_text_past_the_first_segment_is_text_too(client, monkeypatch):
    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 64)
    rows = [f"{'0x10' if i == 30 else i},{'yes' if i % 2 else 'no'}" for i in range(40)]
    body = ok(up(client, ("n,y\n" + "\n".join(rows) + "\n").encode()))
    assert body["columns"][0]["type"] == "categorical" and "0x10" in body["columns"][0]["categories"]


def test_hex_text_in_a_csv_predict_body_is_not_a_number(client, wait_job):
    rows = [f"{v},{'yes' if v > 30 else 'no'}" for v in range(20, 44)]
    ds = ok(up(client, ("age,y\n" + "\n".join(rows) + "\n").encode()))
    model = train(client, wait_job, ds, 2)
    r = client.post(f"/v1/models/{model}/predict", content=b"age\n41\n0x29\n", headers={"content-type": "text/csv"})
    assert err(r) == "CSV: row 2, column 'age': expected a number, got '0x29'"
    r = client.post(f"/v1/models/{model}/predict", json={"records": [{"age": "0x29"}]})
    assert err(r) == "row 1, column 'age': expected a number, got '0x29'"


# -- 13: pandas' NA tokens (and ? -) are missing everywhere -------------------------------------------------------

def test_the_na_tokens_are_pandas_defaults_plus_question_mark_and_dash():
    assert set(NA_TOKENS) == {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?",
                              "-", "."}


@pytest.mark.parametrize("token", [t for t in NA_TOKENS if t])
def test_one_na_token_leaves_a_numeric_column_numeric(client, token):
    rows = [f"{token if i == 4 else i},{'yes' if i % 2 else 'no'}" for i in range(20)]
    col = ok(up(client, ("n,y\n" + "\n".join(rows) + "\n").encode()))["columns"][0]
    assert (col["type"], col["missing"], col["min"], col["max"]) == ("numeric", 1, 0.0, 19.0)


def test_none_in_a_text_column_is_missing_its_own_category(app, client):
    body = ok(up(client, b"plan,y\npro,yes\nNone,no\nfree,no\nNULL,yes\n"))
    assert body["columns"][0] == {"name": "plan", "type": "categorical", "missing": 2, "n_categories": 2,
                                  "categories": ["free", "pro"],
                                  "top": [{"value": "free", "count": 1}, {"value": "pro", "count": 1}]}
    # the form field replaces the list: None is then a category
    assert ok(up(client, b"plan,y\npro,yes\nNone,no\nfree,no\nNULL,yes\n", na_values=""))["columns"][0][
        "categories"] == ["NULL", "None", "free", "pro"]


def test_na_tokens_are_missing_at_predict_in_every_body(client, wait_job):
    rng = np.random.default_rng(1)
    lines = ["age,plan,y"] + [f"{int(a)},{p},{'yes' if a > 40 else 'no'}"
                              for a, p in zip(rng.integers(18, 70, 60), ["pro", "free"] * 30)]
    model = train(client, wait_job, ok(up(client, ("\n".join(lines) + "\n").encode())), 2)
    url = f"/v1/models/{model}/predict"
    want = client.post(url, json={"records": [{"age": None, "plan": None}]}).json()
    for token in ("NULL", "None", "n/a", "#N/A", "nan", " NA "):
        assert client.post(url, json={"records": [{"age": token, "plan": token}]}).json() == want, token
        assert client.post(url, json={"columns": ["age", "plan"], "data": [[token, token]]}).json() == want
        r = client.post(url, content=f"age,plan\n{token},{token}\n".encode(), headers={"content-type": "text/csv"})
        assert r.json() == want, (token, r.text)


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

@pytest.mark.parametrize("content, detail", [
    (gzip.compress(b"a,y\n1,2\n", mtime=0), "the file looks like gzip (bytes 1f 8b), not CSV text: name it .csv.gz"),
    (parquet_bytes(pa.table({"a": [1], "y": [2]})), "the file looks like Parquet (bytes PAR1), not CSV text: name "
                                                    "it .parquet"),
    (arrow_bytes(pa.table({"a": [1], "y": [2]})), "the file looks like Arrow IPC (bytes ARROW1), not CSV text: "
                                                  "name it .arrow"),
    (b"PK\x03\x04rest", "the file looks like a zip archive (bytes PK), not CSV text: an .npz is read when named "
                        ".npz; a spreadsheet (.xlsx) must be saved as CSV first"),
], ids=["gzip", "parquet", "arrow", "zip"])     # fixed ids: xdist workers must collect the same test names
def test_a_binary_file_named_csv_is_named_by_its_magic_bytes(client, content, detail):
    assert err(up(client, content)) == detail


def test_a_gzip_csv_predict_body_is_named(client, wait_job):
    ds = ok(up(client, ("a,y\n" + "".join(f"{i},{'pq'[i % 2]}\n" for i in range(20))).encode()))
    model = train(client, wait_job, ds, 2)
    r = client.post(f"/v1/models/{model}/predict", content=gzip.compress(b"a\n1\n"),
                    headers={"content-type": "text/csv"})
    assert err(r) == ("the CSV body looks like gzip (bytes 1f 8b), not CSV text: send it with its own Content-Type "
                      "(application/vnd.apache.parquet, application/vnd.apache.arrow.stream), or uncompressed")


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
