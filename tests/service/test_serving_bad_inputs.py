"""Bad inputs to the serving endpoints (predict bodies, /invocations, /v2): a clear 4xx naming the field, row,
column or limit, never a 500 (issue 15's new-user test)."""

from __future__ import annotations

import io

import numpy as np
import numpy.lib.format as npformat
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

COLS = ["sepal", "petal", "stem", "leaf"]
NPY = "application/x-npy"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One app, one 3-class model trained on a CSV with named columns and a mean imputer."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.service.helpers import blobs, mlp_spec, post_network, wait_job

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("bad_inputs") / "data", workers=1,
                              max_upload_bytes=4 * 2**20))
    with TestClient(app, raise_server_exceptions=False) as c:   # a 500 is an answer to check, not a raise
        X, y = blobs()
        df = pd.DataFrame(X, columns=COLS)
        df["species"] = np.array(["setosa", "versicolor", "virginica"])[y]
        r = c.post("/v1/datasets", files={"file": ("flowers.csv", df.to_csv(index=False).encode(), "text/csv")},
                   data={"name": "flowers", "target": "species"})
        assert r.status_code == 201, r.text
        net = post_network(c, mlp_spec(3))
        job = c.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": r.json()["id"], "epochs": 3,
                                       "preprocessing": {"numeric": {"impute": "mean"}}}).json()
        job = wait_job(c, job["id"])
        assert job["status"] == "succeeded", job
        mid = job["model_id"]
        yield c, {"id": mid, "predict": f"/v1/models/{mid}/predict", "inv": f"/v1/models/{mid}/invocations",
                  "infer": f"/v2/models/{mid}/infer", "X": X[:10].astype(np.float32), "app": app}


def detail(r):
    return r.status_code, r.json().get("detail")


def error(r):
    return r.status_code, r.json()


def npy_header(shape, descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def arrow_bytes(table: pa.Table, **options) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()


# ----------------------------------------------------------------------------- 1. sizes declared by headers

@pytest.mark.parametrize("shape, message", [
    ((2**61, 4), "the .npy body is truncated: shape (2305843009213693952, 4) of float32 needs "
                 "36,893,488,147,419,103,232 bytes of data, got 1,600; that is over the body limit of 4,194,304 "
                 "bytes (MLP_MAX_UPLOAD_BYTES)"),
    ((2**63 - 1, 4), "the .npy body is truncated: shape (9223372036854775807, 4) of float32 needs "
                     "147,573,952,589,676,412,912 bytes of data, got 1,600; that is over the body limit of "
                     "4,194,304 bytes (MLP_MAX_UPLOAD_BYTES)"),
    ((0, 2**62), "the .npy body has 1,600 bytes after the data of shape (0, 4611686018427387904) (0 bytes of "
                 "float32): the header's shape does not match the data"),
    ((-100, -4), "the .npy header's shape (-100, -4) has a negative dimension"),
    ((-1, 4), "the .npy header's shape (-1, 4) has a negative dimension"),
    ((100, -4), "the .npy header's shape (100, -4) has a negative dimension"),
    ((10, 4), "the .npy body has 1,440 bytes after the data of shape (10, 4) (160 bytes of float32): the "
              "header's shape does not match the data"),
    ((2, 2, 100), "the .npy array must be 2-D (n, input_dim), got shape (2, 2, 100)"),
])
def test_npy_header_shapes_are_checked_against_the_body(shared, shape, message):
    c, m = shared
    r = c.post(m["predict"], content=npy_header(shape) + bytes(1600), headers={"Content-Type": NPY})
    assert detail(r) == (422, message)


def test_npy_with_exact_data_and_an_empty_array(shared):
    c, m = shared
    r = c.post(m["predict"], content=npy_header((100, 4)) + bytes(1600), headers={"Content-Type": NPY})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 100
    r = c.post(m["predict"], content=npy_header((0, 4)), headers={"Content-Type": NPY})
    assert detail(r) == (422, "the .npy array of shape (0, 4) is empty: send at least one row")


def test_compressed_arrow_and_parquet_bodies_are_bounded_by_the_body_limit(shared):
    c, m = shared
    zeros = pa.table({n: np.zeros(400_000, dtype=np.float32) for n in COLS})     # 6.4 MB decoded, a few kB sent
    body = arrow_bytes(zeros, compression="zstd")
    assert len(body) < 100_000
    r = c.post(m["predict"], content=body, headers={"Content-Type": ARROW})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("the Arrow body decodes to more than 4,194,304 bytes (")
    assert "(MLP_MAX_UPLOAD_BYTES)" in r.json()["detail"]
    r = c.post(m["predict"], content=parquet_bytes(zeros, compression="zstd"), headers={"Content-Type": PARQUET})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("the Parquet body declares 400,000 rows x 4 columns (6,400,000 bytes "
                                         "decoded), over the limit of 4,194,304 bytes of a body (MLP_MAX_UPLOAD_BYTES)")
    small = pa.table({n: np.zeros(10, dtype=np.float32) for n in COLS})
    for ctype, data in ((ARROW, arrow_bytes(small, compression="zstd")),
                        (PARQUET, parquet_bytes(small, compression="zstd"))):
        r = c.post(m["predict"], content=data, headers={"Content-Type": ctype})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 10, r.text


# ----------------------------------------------------------------------------- 2. truncated and corrupt tables

def test_truncated_arrow_and_parquet_bodies_are_422_naming_the_format(shared):
    c, m = shared
    table = pa.table({n: np.arange(100, dtype=np.float32) for n in COLS})
    body = arrow_bytes(table)
    for cut in (300, 700, 1500, len(body) - 58, len(body) - 1):       # in the schema, inside the record batch
        r = c.post(m["predict"], content=body[:cut], headers={"Content-Type": ARROW})
        assert r.status_code == 422, (cut, r.text)
        assert r.json()["detail"].startswith("the body is not an Arrow IPC stream: "), (cut, r.text)
    body = parquet_bytes(table)
    # cut, no footer, a footer length past the body, a footer of 0xff (a data page of zeros is not detectable:
    # Parquet pages carry no checksum)
    n = int.from_bytes(body[-8:-4], "little")
    for data in (body[:len(body) // 2], body[:-9], body[:-8] + (2**31 - 1).to_bytes(4, "little") + b"PAR1",
                 body[:-8 - n] + b"\xff" * n + body[-8:]):
        r = c.post(m["predict"], content=data, headers={"Content-Type": PARQUET})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("the body is not a Parquet file: "), r.text


def test_duplicated_column_names_in_a_table_are_named(shared):
    c, m = shared
    table = pa.Table.from_arrays([pa.array([1.0, 2.0])] * 5, names=COLS + ["stem"])
    for ctype, data in ((ARROW, arrow_bytes(table)), (PARQUET, parquet_bytes(table))):
        r = c.post(m["predict"], content=data, headers={"Content-Type": ctype})
        assert detail(r) == (422, f"{'Arrow' if ctype == ARROW else 'Parquet'}: column(s) ['stem'] appear more "
                                  "than once")


# ----------------------------------------------------------------------------- 3. CSV text encodings

@pytest.mark.parametrize("path", ["predict", "inv"])
def test_csv_bodies_that_are_not_utf8_name_the_byte_and_line(shared, path):
    c, m = shared
    for body, where in ((b"\xffsepal,petal,stem,leaf\n1,2,3,4\n", "byte 0xff at offset 0 (line 1)"),
                        (b"sepal,petal,stem,leaf\n1,2,3,4\n5,6,7,\xe98\n", "byte 0xe9 at offset 36 (line 3)")):
        r = c.post(m[path], content=body, headers={"Content-Type": "text/csv"})
        assert detail(r) == (422, f"the CSV body is not UTF-8 text: {where} cannot be decoded; name the encoding "
                                  "in the Content-Type, e.g. text/csv; charset=cp1252")
    r = c.post(m[path], content=b"1,2\n", headers={"Content-Type": "text/csv; charset=klingon"})
    assert detail(r) == (422, "Content-Type charset 'klingon': unknown encoding (e.g. utf-8, cp1252, latin-1)")


def test_csv_charset_parameter_is_used(shared):
    c, m = shared
    text = "sépal,petal,stem,leaf\n1,2,3,4\n".replace("sépal", "sepal") + "5,6,7,8\n"
    ref = c.post(m["predict"], content=text.encode(), headers={"Content-Type": "text/csv"})
    assert ref.status_code == 200, ref.text
    for charset in ("cp1252", "utf-16"):
        r = c.post(m["predict"], content=text.encode(charset), headers={"Content-Type": f"text/csv; charset={charset}"})
        assert (r.status_code, r.json()) == (200, ref.json())
    # a header a cp1252 export wrote: decoded as cp1252 it names an unknown column (not a 500, not a UTF-8 error)
    r = c.post(m["predict"], content="Länge,petal,stem,leaf\n1,2,3,4\n".encode("cp1252"),
               headers={"Content-Type": "text/csv; charset=cp1252"})
    assert r.status_code == 422 and "unknown column 'Länge'" in r.json()["detail"], r.text
    r = c.post(m["predict"], content=b"\xef\xbb\xbf" + text.encode(), headers={"Content-Type": "text/csv"})
    assert (r.status_code, r.json()) == (200, ref.json())          # a UTF-8 BOM is not a column name


# ----------------------------------------------------------------------------- 6. CSV without a header line

@pytest.mark.parametrize("path", ["predict", "inv"])
def test_csv_without_a_header_line_is_refused_not_one_row_short(shared, path):
    c, m = shared
    r = c.post(m[path], content=b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", headers={"Content-Type": "text/csv"})
    assert detail(r) == (422, "the CSV body needs a header line naming the columns ('sepal', 'petal', 'stem', "
                              "'leaf'); its first line '5.1,3.5,1.4,0.2' is all numbers, so it would be read as "
                              "names and lost as a row")
    # pandas' unnamed columns (to_csv of a frame built from an array) are names: taken in the trained order
    r = c.post(m[path], content=b"0,1,2,3\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2, r.text
