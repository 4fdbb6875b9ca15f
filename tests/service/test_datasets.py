"""/v1/datasets: uploads (CSV, .npz, JSON) and every error outcome, checking status and detail text."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import DEFAULT_OWNER
from service.datasets import service as datasets_service
from service.datasets.tables import Dataset
from service.settings import Settings
from tests.service.helpers import assert_same_404

IRIS_CSV = (b"sepal_length,sepal_width,petal_length,species\n"
            b"5.1,3.5,1.4,setosa\n"
            b"7.0,3.2,4.7,versicolor\n"
            b"6.3,3.3,6.0,virginica\n")
MID_CSV = (b"sepal_length,sepal_width,species,petal_length\n"
            b"5.1,3.5,setosa,1.4\n"
            b"7.0,3.2,versicolor,4.7\n"
            b"6.3,3.3,virginica,6.0\n"
            b"4.9,3.0,setosa,1.4\n")


def upload_csv(client, content: bytes, filename: str = "data.csv", **fields):
    return client.post("/v1/datasets", files={"file": (filename, content, "text/csv")}, data=fields)


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def stored_files(app) -> list[str]:
    """Every file under the artifact root (temp files included), relative paths."""
    root = app.state.storage.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".readyz")


@pytest.fixture
def idle_client(tmp_path):
    """A client whose app has no workers, so queued jobs inserted by a test stay queued."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "idle", workers=0))) as c:
        yield c


# -- 201 -------------------------------------------------------------------------------------------------------

def test_csv_201_string_labels_named_target(app, client):
    r = upload_csv(client, MID_CSV, filename="iris.csv", target="species")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "iris"                       # default name: the file name without extension
    assert body["task"] == "classification"
    assert body["n_samples"] == 4 and body["n_features"] == 3 and body["n_outputs"] == 1
    assert body["feature_names"] == ["sepal_length", "sepal_width", "petal_length"]
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert body["target"] == "species" and body["size_bytes"] == len(MID_CSV)
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=body["id"])
    X, y = datasets_service.load_arrays(app.state.storage, row)
    assert isinstance(X, np.memmap) and X.dtype == np.float32 and X.shape == (4, 3)
    np.testing.assert_allclose(X[1], [7.0, 3.2, 4.7], rtol=1e-6)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 0]
    X2, _ = datasets_service.load_arrays(app.state.storage, row, mmap=False)
    assert not isinstance(X2, np.memmap)


def test_csv_201_default_target_is_last_column_integer_labels(client):
    csv = b"a,b,label\n" + b"".join(b"%d,%d,%d\n" % (i, i * 2, i % 3) for i in range(12))
    r = upload_csv(client, csv, name="ints")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "ints" and body["target"] == "label"
    assert body["task"] == "classification" and body["classes"] == [0, 1, 2]   # numbers stay numbers


def test_csv_201_float_target_is_regression(client):
    csv = b"x,y\n1,0.5\n2,1.5\n3,2.25\n"
    r = upload_csv(client, csv)
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "regression" and r.json()["classes"] is None


def test_csv_201_many_distinct_integers_is_regression_unless_task_given(client):
    csv = b"x,y\n" + b"".join(b"%d,%d\n" % (i, 3 * i) for i in range(30))
    assert upload_csv(client, csv).json()["task"] == "regression"
    r = upload_csv(client, csv, task="classification")
    assert r.status_code == 201 and r.json()["task"] == "classification" and len(r.json()["classes"]) == 30


def test_csv_201_task_regression_overrides_integer_labels(client):
    r = upload_csv(client, b"x,y\n1,0\n2,1\n3,1\n4,0\n", task="regression")
    assert r.status_code == 201 and r.json()["task"] == "regression"


def test_csv_201_quoted_fields_crlf_and_bom(client):
    csv = '\ufeffa,"b",label\r\n1,2,"big, red"\r\n3,4,small\r\n\r\n5,6,small\r\n'.encode()
    r = upload_csv(client, csv)
    assert r.status_code == 201, r.text
    assert r.json()["feature_names"] == ["a", "b"] and r.json()["classes"] == ["big, red", "small"]
    assert r.json()["n_samples"] == 3


def test_npz_201_numeric_and_string_labels(app, client):
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    r = client.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=np.array(["b", "a"] * 3)))})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "d" and body["classes"] == ["a", "b"] and body["target"] is None
    assert body["feature_names"] == ["x0", "x1"]
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=body["id"])
    assert datasets_service.load_arrays(app.state.storage, row)[1].tolist() == [1, 0, 1, 0, 1, 0]
    names = np.array(["width", "height"])
    r = client.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(X=X, y=X.sum(1) / 3, feature_names=names))},
                    data={"name": "reg"})
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "regression" and r.json()["feature_names"] == ["width", "height"]


def test_json_201_string_labels(app, client):
    r = client.post("/v1/datasets", json={"name": "xor", "X": [[0, 0], [0, 1], [1, 0], [1, 1]],
                                          "y": ["no", "yes", "yes", "no"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["task"] == "classification" and body["classes"] == ["no", "yes"] and body["n_features"] == 2


def test_json_201_multi_output_regression(app, client):
    r = client.post("/v1/datasets", json={"name": "two", "X": [[0.0], [1.0], [2.0]],
                                          "y": [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]})
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "regression" and r.json()["n_outputs"] == 2
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=r.json()["id"])
    y = datasets_service.load_arrays(app.state.storage, row)[1]
    assert y.shape == (3, 2) and y.dtype == np.float32


# -- 413 / 415 ---------------------------------------------------------------------------------------------

@pytest.mark.settings(max_upload_bytes=1000)
def test_413_content_length_over_limit_stores_nothing(app, client):
    r = upload_csv(client, b"a,b\n" + b"1,2\n" * 1000)
    assert r.status_code == 413
    assert r.json()["detail"] == "upload exceeds the limit of 1,000 bytes (MLP_MAX_UPLOAD_BYTES)"
    assert stored_files(app) == []


@pytest.mark.settings(max_upload_bytes=5000)
def test_413_streamed_without_content_length_leaves_no_temp_file(app, client):
    boundary = "xyzboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\na,b\n").encode()

    def body():                                   # a generator: httpx sends it chunked, with no length
        yield head
        for _ in range(100):
            yield b"1,2\n" * 100
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/v1/datasets", content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert "MLP_MAX_UPLOAD_BYTES" in r.json()["detail"]
    assert stored_files(app) == []
    assert client.get("/v1/datasets").json()["total"] == 0


@pytest.mark.settings(max_upload_bytes=100)
def test_413_json_body_over_limit(client):
    r = client.post("/v1/datasets", json={"name": "x", "X": [[1.0] * 50], "y": [1]})
    assert r.status_code == 413


def test_415_unsupported_file_extension(client):
    r = client.post("/v1/datasets", files={"file": ("data.xlsx", b"PK\x03\x04...", "application/octet-stream")})
    assert r.status_code == 415
    assert r.json()["detail"].startswith("unsupported file type 'data.xlsx'")


def test_415_unsupported_content_type(client):
    r = client.post("/v1/datasets", content=b"a,b\n1,2\n", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["detail"].startswith("unsupported Content-Type 'text/plain'")


# -- 422: CSV ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, fields, detail", [
    (b"a,b,label\n1,2,x\n3,4\n", {}, "line 3: expected 3 columns (as in the header), found 2"),
    (b"a,b,label\n1,2,x\n3,4,x,9\n", {}, "line 3: expected 3 columns (as in the header), found 4"),
    (b"a,b,label\n1,2,x\n\n3,4,y\n-inf,1,y\n", {}, "line 5, column 1 ('a'): value is not finite (infinite)"),
    (b"a,b,label\n1,2,x\n3,1e39,y\n", {},
     "line 3, column 2 ('b'): value is not finite (1e+39 is too large for float32)"),
    (b"a,b,label\n1,2,1\n3,4,inf\n", {}, "target column 'label': the value in data row 2 is not finite (inf)"),
    (b"a,b,label\n1,2,cat\n3,4,\n", {}, "line 3, column 3 ('label'): missing target value; fill it in, or drop "
                                        "such rows with the form field drop_missing_target=true"),
    (b"a,b,label\n1,2,1\n3,4, \n", {}, "line 3, column 3 ('label'): missing target value; fill it in, or drop "
                                       "such rows with the form field drop_missing_target=true"),
    (b"", {}, "the file is empty"),
    (b"a,b,label\n", {}, "the CSV has a header row but no data rows"),
    (b"a,b,label\n1,2,3\n", {"target": "species"},
     "target column 'species' not found; the header has: a, b, label"),
    (b"a,b,label\n1,2,cat\n3,4,dog\n", {"task": "regression"},
     "task 'regression' needs a numeric target, but target column 'label' has the non-numeric value 'cat'; "
     "use task=classification"),
    (b"a,b,label\n1,2,1\n", {"task": "clustering"},
     "task must be one of ['classification', 'regression'], got 'clustering'"),
    (b"abc\n1\n", {}, "the header row must name at least one feature column and the target column; found 1 "
                      "column(s) (delimiters tried: comma, semicolon, tab, pipe; set the form field delimiter)"),
    (b"a,a,label\n1,2,3\n", {},
     "header names column 'a' more than once (names are compared with surrounding spaces trimmed)"),
    (b"a,b\n1,\xff\n", {}, "the file is not UTF-8 text (byte offset 6); name its encoding in the form field "
                            "encoding, e.g. cp1252 or latin-1"),
])
def test_csv_422_names_line_and_column(app, client, content, fields, detail):
    r = upload_csv(client, content, **fields)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail
    assert stored_files(app) == []


def test_csv_422_error_in_a_later_block_names_the_right_line(monkeypatch, client):
    from service.datasets import tabular

    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 64)           # many small segments
    rows = [b"%d,%d,%d\n" % (i, i, i % 2) for i in range(200)]
    rows[150] = b"150,inf,0\n"
    r = upload_csv(client, b"a,b,label\n" + b"".join(rows))
    assert r.status_code == 422
    assert r.json()["detail"] == "line 152, column 2 ('b'): value is not finite (infinite)"


def test_csv_text_in_a_later_block_makes_the_column_categorical(monkeypatch, client):
    from service.datasets import tabular

    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 64)
    rows = b"".join(b"%d,%s,%s\n" % (i, [b"1", b"2", b"cat"][i % 3] if i > 60 else b"1", [b"1", b"2", b"cat"][i % 3])
                    for i in range(90))
    r = upload_csv(client, b"a,b,label\n" + rows)
    assert r.status_code == 201, r.text
    assert r.json()["classes"] == ["1", "2", "cat"]      # one non-numeric label makes all labels strings
    assert r.json()["n_samples"] == 90
    b = r.json()["columns"][1]
    assert b["type"] == "categorical" and b["categories"] == ["1", "2", "cat"]


def test_csv_segments_keep_quoted_line_breaks_and_widen_integers(monkeypatch, app, client):
    from service.datasets import tabular

    monkeypatch.setattr(tabular, "SEGMENT_BYTES", 50)
    rows = [b'%d,"note\nline %d, with ""quotes""",%d\n' % (i, i, i % 2) for i in range(40)]
    rows[30] = b'30.5,"x",0\n'                      # the first segment saw integers only
    r = upload_csv(client, b"a,note,label\n" + b"".join(rows))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["n_samples"] == 40 and body["columns"][1]["n_categories"] == 40
    with app.state.sessionmaker() as session:
        row = datasets_service.get_or_raise(session, owner=DEFAULT_OWNER, dataset_id=body["id"])
    X, y = datasets_service.load_arrays(app.state.storage, row)
    assert X[30, 0] == 30.5 and X[39, 0] == 39 and y.tolist() == [i % 2 for i in range(40)]
    a = np.array([30.5 if i == 30 else i for i in range(40)])       # statistics merged over the segments
    assert row.columns[0]["mean"] == pytest.approx(a.mean()) and row.columns[0]["std"] == pytest.approx(a.std())
    assert row.columns[0]["min"] == 0 and row.columns[0]["max"] == 39
    assert row.columns[1]["categories"][0] == "note\nline 0, with \"quotes\""


# -- 422: npz ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arrays, detail", [
    ({"X": np.array([{"a": 1}, None], dtype=object), "y": np.array([0, 1])},
     "array 'X' holds Python objects (pickled data), which is never loaded; save numeric (or string label) arrays"),
    ({"X": np.ones((3, 2)), "y": np.array([0, 1])}, "X has 3 rows but y has 2"),
    ({"X": np.ones((3, 2))}, ".npz is missing array(s) ['y']; it holds ['X']"),
    ({"X": np.array([[1.0, 2.0], [np.inf, 1.0]]), "y": np.array([0, 1])}, "X[1, 0] is not a finite number "
                                                                          "(infinite)"),
    ({"X": np.ones(3), "y": np.array([0, 1, 0])}, "X must be 2-D (n_samples, n_features), got shape [3]"),
])
def test_npz_422(app, client, arrays, detail):
    r = client.post("/v1/datasets", files={"file": ("d.npz", npz_bytes(**arrays))})
    assert r.status_code == 422
    assert r.json()["detail"] == detail
    assert stored_files(app) == []


def test_npz_422_not_a_zip(client):
    r = client.post("/v1/datasets", files={"file": ("d.npz", b"definitely not a zip")})
    assert r.status_code == 422
    assert r.json()["detail"] == "not a valid .npz file (expected a zip archive written by np.savez)"


# -- 422: JSON and multipart form ----------------------------------------------------------------------------

@pytest.mark.parametrize("body, detail", [
    ({"name": "x", "X": [[1, 2], [3]], "y": [0, 1]}, "X[1] has 1 values but X[0] has 2 (ragged rows)"),
    ({"name": "x", "X": [[1, 2], [3, "a"]], "y": [0, 1]}, "X[1][1] is not a number: 'a'"),
    ({"name": "x", "X": [[1, "2"], [3, 4]], "y": [0, 1]}, "X[0][1] is not a number: '2'"),      # as predict reads
    ({"name": "x", "X": [[1, 2], [3, True]], "y": [0, 1]}, "X[1][1] is not a number: true"),
    ({"name": "x", "X": [[1], [2]], "y": [[1.5, "a"], [2, 3]]}, "y[0][1] is not a number: 'a'"),
    ({"name": "x", "X": [[1, 2], [3, None]], "y": [0, 1]}, "X[1][1] is not a finite number: null"),
    ({"name": "x", "X": [[1, 2], [3, 1e39]], "y": [0, 1]}, "X[1][1] is not a finite number: 1e+39"),
    ({"name": "x", "X": [[1, 2], [3, 4]], "y": [0]}, "X has 2 rows but y has 1"),
    ({"name": "x", "X": [], "y": []}, "X is empty: send at least one row"),
    ({"name": "x", "X": [[1, 2]], "y": [0, "a"][:1] + ["a"]}, "X has 1 rows but y has 2"),
    ({"name": "x", "X": [[1, 2], [3, 4]], "y": [0, "a"]},
     "y mixes strings and numbers; labels must be all strings or all numbers"),
    ({"X": [[1, 2]]}, "field 'y' is required"),
    ({"name": "x", "X": [[1]], "y": [1], "colour": "red"},
     "unknown field(s) ['colour']; expected name, X, y, task, feature_names"),
])
def test_json_422(app, client, body, detail):
    r = client.post("/v1/datasets", json=body)
    assert r.status_code == 422
    assert r.json()["detail"] == detail
    assert stored_files(app) == []


def test_json_integer_labels_stay_exact(client):
    """Integers past 2**53 are not rounded through float64 (two labels would merge). (Past int64 the JSON parser
    itself reads a number as a float.)"""
    r = client.post("/v1/datasets", json={"X": [[0], [1], [2], [3]], "y": [2**53 + 1, 2**53] * 2})
    assert r.status_code == 201 and r.json()["classes"] == [2**53, 2**53 + 1], r.text
    assert client.get(f"/v1/datasets/{r.json()['id']}").json()["classes"] == [2**53, 2**53 + 1]


def test_json_422_invalid_json(client):
    r = client.post("/v1/datasets", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("the body is not valid JSON")


def test_multipart_422_unknown_field_and_missing_file(client):
    r = upload_csv(client, IRIS_CSV, targte="species")
    assert r.status_code == 422
    assert r.json()["detail"] == ("unknown form field 'targte'; expected file, name, target, task, delimiter, "
                                  "na_values, encoding, decimal, thousands, categorical, ignore, max_categories, "
                                  "drop_missing_target")
    r = client.post("/v1/datasets", data={"name": "x"}, files={"other": ("a.csv", b"a,b\n1,2\n")})
    assert r.status_code == 422
    r = client.post("/v1/datasets", files={"name": (None, "only a field")})
    assert r.status_code == 422
    assert r.json()["detail"] == "multipart upload needs a 'file' part (.csv, .csv.gz, .parquet, .arrow or .npz)"


def test_storage_failure_leaves_nothing_half_stored(monkeypatch, app, client):
    storage = app.state.storage
    real = storage.save_array

    def failing(key, arr):
        if key.endswith("y.npy"):
            raise OSError("disk full")
        return real(key, arr)

    monkeypatch.setattr(storage, "save_array", failing)
    try:
        assert upload_csv(client, IRIS_CSV).status_code == 500
    except OSError:                      # TestClient re-raises server errors unless the app maps them
        pass
    assert [f for f in stored_files(app) if f.startswith("datasets/")] == []
    monkeypatch.undo()
    assert client.get("/v1/datasets").json()["total"] == 0


# -- read, list, delete ------------------------------------------------------------------------------------

def test_get_200_and_404(client):
    ds = upload_csv(client, IRIS_CSV).json()
    r = client.get(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 200 and r.json() == ds
    r = client.get("/v1/datasets/nope")
    assert r.status_code == 404 and r.json()["detail"] == "dataset nope not found"


def test_list_limit_offset_total(client):
    ids = [upload_csv(client, IRIS_CSV, name=f"d{i}").json()["id"] for i in range(4)]
    body = client.get("/v1/datasets", params={"limit": 3, "offset": 2}).json()
    assert body["total"] == 4 and len(body["items"]) == 2
    assert sorted(i["id"] for i in client.get("/v1/datasets").json()["items"]) == sorted(ids)


def test_delete_204_removes_files_then_404(app, client):
    ds = upload_csv(client, IRIS_CSV).json()
    assert f"datasets/{ds['id']}/X.npy" in stored_files(app)
    r = client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 204
    assert not any(f.startswith(f"datasets/{ds['id']}") for f in stored_files(app))
    assert client.get(f"/v1/datasets/{ds['id']}").status_code == 404
    r = client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 404 and r.json()["detail"] == f"dataset {ds['id']} not found"


def test_delete_409_while_a_job_uses_it(idle_client):
    from service.jobs.tables import Job

    ds = upload_csv(idle_client, IRIS_CSV).json()
    with idle_client.app.state.sessionmaker() as session:
        session.add(Job(id="k" * 32, owner=DEFAULT_OWNER, network_id="n" * 32, dataset_id="o" * 32,
                        validation_dataset_id=ds["id"], params={}, epochs=1, status="queued"))
        session.commit()
    r = idle_client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 409
    assert r.json()["detail"].startswith(f"dataset {ds['id']} is used by job {'k' * 32}")


def test_other_tenant_gets_404(client):
    with client.app.state.sessionmaker() as session:
        session.add(Dataset(id="t" * 32, owner="someone-else", name="theirs", task="regression", n_samples=1,
                            n_features=1, n_outputs=1, feature_names=["x0"], classes=None, target=None,
                            size_bytes=1))
        session.commit()
    assert_same_404(client, "get", "/v1/datasets/{}", "t" * 32)
    assert_same_404(client, "delete", "/v1/datasets/{}", "t" * 32)
    assert client.get("/v1/datasets").json()["total"] == 0


def test_openapi_documents_both_upload_bodies(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    content = op["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "X" in content["application/json"]["schema"]["properties"]


def test_no_temp_files_after_uploads(app, client):
    upload_csv(client, IRIS_CSV)
    upload_csv(client, b"a,b\n1,x\n")
    tmp = app.state.storage.temp_dir()
    assert os.listdir(tmp) == []


@pytest.mark.settings(quota_max_dataset_bytes=50)
def test_413_over_the_tenants_dataset_quota(client):
    r = upload_csv(client, IRIS_CSV)
    assert r.status_code == 413
    assert r.json()["detail"].startswith(f"quota exceeded: the data set has {len(IRIS_CSV)} bytes, more than "
                                         f"the limit quota_max_dataset_bytes (MLP_QUOTA_MAX_DATASET_BYTES)=50")


@pytest.mark.settings(quota_max_stored_bytes=len(IRIS_CSV) + 10)
def test_413_over_the_tenants_stored_bytes_quota(app, client):
    assert upload_csv(client, IRIS_CSV).status_code == 201
    r = upload_csv(client, IRIS_CSV)
    assert r.status_code == 413 and "quota_max_stored_bytes (MLP_QUOTA_MAX_STORED_BYTES)" in r.json()["detail"]
    assert client.get("/v1/datasets").json()["total"] == 1
    assert len([f for f in stored_files(app) if f.startswith("datasets/")]) == 2     # X.npy, y.npy of the first
