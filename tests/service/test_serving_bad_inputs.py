"""Bad inputs to the serving endpoints (predict bodies, /invocations, /v2): a clear 4xx naming the field, row,
column or limit, never a 500 (issue 15's new-user test)."""

from __future__ import annotations

import io

import numpy as np
import numpy.lib.format as npformat
import orjson
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
    from tests.service.helpers import train_flowers

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("bad_inputs") / "data", workers=1,
                              max_upload_bytes=4 * 2**20))
    with TestClient(app, raise_server_exceptions=False) as c:   # a 500 is an answer to check, not a raise
        mid, _, X = train_flowers(c, COLS, epochs=3, preprocessing={"numeric": {"impute": "mean"}})
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
    assert r.json()["detail"].startswith("the Arrow body declares 6,400,000 bytes of column data once "
                                         "decompressed, more than 4,194,304 bytes")
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
    r = c.post(m[path], content="sepal,petal,stem,leaf\n1,2,3,4\n".encode("utf-16-le"),
               headers={"Content-Type": "text/csv"})         # UTF-16 without a BOM
    assert detail(r) == (422, "the CSV body holds a NUL byte (line 1), so it is not UTF-8 text; UTF-16 or UTF-32 "
                              "without a byte-order mark looks like this: name the encoding in the Content-Type, "
                              "e.g. text/csv; charset=utf-16-le")
    for codec in ("rot13", "base64", "zlib"):           # codecs Python knows that do not decode text
        r = c.post(m[path], content=b"1,2\n", headers={"Content-Type": f"text/csv; charset={codec}"})
        assert detail(r) == (422, f"Content-Type charset '{codec}': not a text encoding (e.g. utf-8, cp1252, latin-1)")


def test_csv_charset_parameter_is_used(shared):
    c, m = shared
    text = "sépal,petal,stem,leaf\n1,2,3,4\n".replace("sépal", "sepal") + "5,6,7,8\n"
    ref = c.post(m["predict"], content=text.encode(), headers={"Content-Type": "text/csv"})
    assert ref.status_code == 200, ref.text
    for charset in ("cp1252", "utf-16", "utf-32"):
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


# ----------------------------------------------------------------------------- 4. OIP v2 request fields

def _tensor(**fields):
    return {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4], **fields}


@pytest.mark.parametrize("body, message", [
    ({"inputs": [_tensor(datatype=[])]}, "input 'input': datatype must be a string such as \"FP32\", got a list"),
    ({"inputs": [_tensor(datatype={"a": 1})]},
     "input 'input': datatype must be a string such as \"FP32\", got an object"),
    ({"inputs": [_tensor(name=["input"])]}, "inputs[0].name must be a string, got a list"),
    ({"inputs": [[1, 2, 3, 4]]}, "inputs[0] must be an object {name, shape, datatype, data}, got a list"),
    ({"inputs": [_tensor(shape={"n": 1})]}, "input 'input': shape must be a list [n, 4], got an object"),
    ({"inputs": [_tensor(shape=[1, "4"])]}, "input 'input': shape[1] must be a non-negative integer, got '4'"),
    ({"inputs": [_tensor(shape=[1.0, 4])]}, "input 'input': shape[0] must be a non-negative integer, got 1.0"),
    ({"inputs": [_tensor(parameters=[1])]}, "input 'input': parameters must be an object, got a list"),
    ({"inputs": [_tensor(data=None, parameters={"binary_data_size": -4})]},
     "input 'input': parameters.binary_data_size must be a non-negative integer (bytes), got -4"),
    ({"inputs": [_tensor(data=None, parameters={"binary_data_size": "16"})]},
     "input 'input': parameters.binary_data_size must be a non-negative integer (bytes), got '16'"),
    ({"inputs": [_tensor()], "outputs": ["label"]}, "outputs[0] must be an object {\"name\": ...}, got a string"),
    ({"inputs": [_tensor()], "outputs": [{"name": ["label"]}]}, "outputs[0].name must be a string, got a list"),
    ({"inputs": [_tensor()], "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]},
     "outputs[0].parameters.binary_data must be true or false, got 'yes'"),
    ({"inputs": [_tensor()], "outputs": {"name": "label"}}, "outputs must be a list of {\"name\": ...}, got an object"),
    ({"inputs": [_tensor()], "parameters": {"binary_data_output": 1}},
     "parameters.binary_data_output must be true or false, got 1"),
    ({"inputs": [_tensor()], "parameters": "binary"}, "parameters must be an object, got a string"),
    ({"inputs": [_tensor()], "id": 42}, "id must be a string, got a number"),
])
def test_v2_fields_of_the_wrong_json_type_are_400_naming_them(shared, body, message):
    c, m = shared
    r = c.post(m["infer"], json=body)
    assert error(r) == (400, {"error": message})


@pytest.mark.parametrize("datatype, data, message", [
    ("INT64", [1, 2, 3.7, 4], "element 2 (3.7) is not an integer (datatype INT64)"),
    ("INT64", [2**63, 1, 2, 3], "element 0 (9223372036854775808) is outside INT64's range "
                                "-9223372036854775808..9223372036854775807"),
    ("INT64", [9.3e18, 1, 2, 3], "element 0 (9.3e+18) is outside INT64's range "
                                 "-9223372036854775808..9223372036854775807"),
    ("BOOL", [1, 0, -5, 1], "element 2 (-5) is not 0 or 1 (datatype BOOL)"),
    ("BOOL", [1, 0, 0.5, 1], "element 2 (0.5) is not 0 or 1 (datatype BOOL)"),
    ("UINT8", [1, -1, 3, 4], "element 1 (-1) is outside UINT8's range 0..255"),
    ("INT8", [300, 1, 3, 4], "element 0 (300) is outside INT8's range -128..127"),
    ("FP32", [1, "abc", 3, 4], "element 1 ('abc') is not a number (datatype FP32)"),
    ("FP64", [[1, 2], [3, [4]]], "data must hold FP64 numbers, as a flat list or as nested lists of equal-length "
                                 "rows"),
    ("INT32", [1, None, 3, 4], "element 1 (None) is not a number (datatype INT32)"),
])
def test_v2_data_elements_that_are_not_of_the_datatype_are_named(shared, datatype, data, message):
    c, m = shared
    r = c.post(m["infer"], json={"inputs": [_tensor(datatype=datatype, data=data)]})
    assert error(r) == (400, {"error": f"input 'input': {message}"})


def test_v2_whole_numbers_booleans_and_nulls_still_infer(shared):
    c, m = shared
    for datatype, data in (("INT64", [1, 2, 3, 4]), ("INT64", [1.0, 2.0, 3.0, 4.0]), ("BOOL", [True, False, 1, 0]),
                           ("UINT8", [0, 255, 3, 4]), ("FP32", [1, None, 3, 4])):
        r = c.post(m["infer"], json={"inputs": [_tensor(datatype=datatype, data=data)]})
        assert r.status_code == 200, (datatype, data, r.text)


def _binary(c, m, tensor: dict, data: bytes):
    head = orjson.dumps({"inputs": [tensor]})
    return c.post(m["infer"], content=head + data, headers={"Inference-Header-Content-Length": str(len(head)),
                                                            "Content-Type": "application/octet-stream"})


def test_v2_binary_data_must_be_exactly_what_the_tensor_declares(shared):
    c, m = shared
    raw = np.ones((1, 4), np.float32).tobytes()
    t = {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
    assert _binary(c, m, t, raw).status_code == 200
    assert error(_binary(c, m, t, raw + b"abcd")) == (400, {"error": (
        "the body has 4 bytes of binary data after input 'input''s 16 (binary_data_size): "
        "Inference-Header-Content-Length or the data is wrong")})
    assert error(_binary(c, m, {**t, "data": [1, 2, 3, 4]}, raw)) == (400, {"error": (
        "input 'input' has both 'data' and parameters.binary_data_size: send one")})
    assert error(_binary(c, m, _tensor(), raw)) == (400, {"error": (
        "the body has 16 bytes after the JSON header (Inference-Header-Content-Length) but input 'input' has no "
        "parameters.binary_data_size")})
    assert error(_binary(c, m, {**t, "parameters": {"binary_data_size": 2**62}}, raw)) == (400, {"error": (
        "input 'input': binary_data_size 4611686018427387904 exceeds the 16 bytes of binary data after the JSON "
        "header")})
    assert error(_binary(c, m, {**t, "shape": [2**40, 4]}, raw)) == (400, {"error": (
        "input 'input': binary_data_size is 16 bytes but shape [1099511627776, 4] of FP32 needs 17592186044416")})


def test_unknown_v2_paths_answer_the_protocols_error(shared):
    c, m = shared
    for method, path in (("GET", f"/v2/models/{m['id']}/config"), ("GET", f"/v2/models/{m['id']}/stats"),
                         ("POST", "/v2/repository/index")):
        r = c.request(method, path)
        assert error(r) == (404, {"error": f"no such endpoint: {method} {path} (/v2 serves server and model "
                                           "metadata, health, readiness and infer)"})
    r = c.delete("/v2/health/live")
    assert error(r) == (405, {"error": "method not allowed: DELETE /v2/health/live (/v2 serves server and model "
                                       "metadata, health, readiness and infer)"})
    assert detail(c.get("/v1/nothing")) == (404, "Not Found")       # /v1 keeps FastAPI's {"detail": ...}


# ----------------------------------------------------------------------------- 5. a 500 closes the connection

def _raising_app(tmp_path):
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data", workers=1))

    def boom() -> dict:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)
    app.add_api_route("/v2/boom", boom)
    return app


def test_an_unhandled_exception_answers_json_with_connection_close(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(_raising_app(tmp_path), raise_server_exceptions=False) as c:
        for path, body in (("/v1/boom", {"detail": "internal error"}), ("/v2/boom", {"error": "internal error"})):
            r = c.get(path)
            assert (r.status_code, r.json(), r.headers["connection"]) == (500, body, "close")


def test_after_a_500_the_clients_next_request_on_a_new_connection_succeeds(tmp_path):
    """Through uvicorn: the 500 says Connection: close, so httpx opens a new connection for the next request
    instead of sending it into the one uvicorn closed (which lost that request with 'Connection reset')."""
    import threading

    import httpx
    import uvicorn

    from tests.service.helpers import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_raising_app(tmp_path), host="127.0.0.1", port=port, log_level="critical",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.05)
            for _ in range(3):
                r = client.get("/v1/boom")
                after = client.post("/v2/health/live")     # the next request from the pool: not lost to a reset
                assert (r.status_code, r.headers.get("connection"), after.status_code) == (500, "close", 405)
                assert client.get("/v2/health/live").json() == {"live": True}
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# ----------------------------------------------------------------------------- 7. echoed values are capped

def test_errors_echo_at_most_a_short_piece_of_a_huge_value(shared):
    c, m = shared
    big = list(np.round(np.random.default_rng(0).random(200_000), 6))
    cases = [
        (m["infer"], {"inputs": [big]}, 400, "inputs[0] must be an object {name, shape, datatype, data}, got a list"),
        (m["infer"], {"inputs": [_tensor(name="x" * 100_000)]}, 400,
         f"model '{m['id']}' takes one input tensor 'input', got ['{'x' * 37}...{'x' * 38}']"),
        (m["infer"], {"inputs": [_tensor(shape=list(range(200_000)))]}, 400,
         "input 'input': shape must be [n, 4] (the model's input width), got [0, 1, 2, 3, 4, 5, ...]"),
        (m["infer"], {"inputs": [_tensor()], "outputs": [{"name": "y" * 100_000}]}, 400, None),
        (m["predict"], {"records": [{"sepal": big}]}, 422,
         "row 1, column 'sepal': expected a number, got [0.636962, 0.269787, 0.040974, 0.016528, 0.81327, "
         "0.912756, ...]"),
        (m["predict"], {"records": [{"z" * 3_000_000: 1}]}, 422, None),
        (m["predict"], {"z" * 3_000_000: 1}, 422, None),
        (m["inv"], {"dataframe_records": [{"sepal": big}]}, 422, None),
        ("/v1/jobs", {"network_id": big[:50_000], "dataset_id": "x"}, 422, None),   # pydantic echoes input
    ]
    for url, body, status, message in cases:
        r = c.post(url, json=body)
        assert r.status_code == status, r.text[:300]
        assert len(r.content) < 1200, (url, r.text[:300])
        if message is not None:
            assert r.json() == ({"error": message} if status == 400 else {"detail": message})


# ----------------------------------------------------------------------------- 8. content types

@pytest.mark.parametrize("ctype", ["text/tab-separated-values", "multipart/form-data; boundary=x", "application/gzip",
                                   "application/x-foo", "application/x-www-form-urlencoded"])
def test_unsupported_content_types_are_415_naming_the_supported_ones(shared, ctype):
    c, m = shared
    media = ctype.split(";")[0]
    r = c.post(m["predict"], content=b'{"inputs": [[1, 2, 3, 4]]}', headers={"Content-Type": ctype})
    assert detail(r) == (415, f"Content-Type {media} is not supported: send application/json (the default), "
                              "application/x-npy, application/vnd.apache.arrow.stream, application/vnd.apache.parquet, "
                              "application/x-parquet, text/csv")
    r = c.post(m["inv"], content=b'{"inputs": [[1, 2, 3, 4]]}', headers={"Content-Type": ctype})
    assert detail(r) == (415, f"Content-Type {media} is not supported: send application/json (the default) or "
                              "text/csv")


def test_json_without_content_type_or_as_json_variants_still_predicts(shared):
    c, m = shared
    for headers in ({}, {"Content-Type": "application/json; charset=utf-8"}, {"Content-Type": "text/plain"},
                    {"Content-Type": "application/vnd.api+json"}):
        for url in (m["predict"], m["inv"]):
            r = c.post(url, content=b'{"inputs": [[1, 2, 3, 4]]}', headers=headers)
            assert r.status_code == 200, (url, headers, r.text)
    r = c.post(m["predict"], content=b"\x1f\x8b", headers={"Content-Type": "application/json",
                                                            "Content-Encoding": "gzip"})
    assert detail(r) == (415, "Content-Encoding gzip is not supported: send the body uncompressed (a binary format "
                              "such as .npy, Arrow or Parquet is compact)")


# ----------------------------------------------------------------------------- 9. named inputs beyond float32

def test_named_values_beyond_float32_name_the_column_and_row(shared):
    c, m = shared
    row = {"sepal": 1.0, "petal": 2.0, "stem": 3.0, "leaf": 4.0}
    message = "row 2, column 'stem': 1e+39 is beyond float32's range (about 3.4e38), which the model computes in"
    r = c.post(m["predict"], json={"records": [row, {**row, "stem": 1e39}]})
    assert detail(r) == (422, message)
    r = c.post(m["predict"], json={"columns": COLS, "data": [[1, 2, 3, 4], [1, 2, 1e39, 4]]})
    assert detail(r) == (422, message)
    r = c.post(m["inv"], json={"dataframe_split": {"columns": ["leaf", "stem", "sepal", "petal"],
                                                   "data": [[1, 2, 3, 4], [4, 1e39, 1, 2]]}})
    assert detail(r) == (422, f"dataframe_split: {message}")
    r = c.post(m["predict"], content=b"sepal,petal,stem,leaf\n1,2,3,4\n1,2,1e39,4\n", headers={"Content-Type": "text/csv"})
    assert detail(r) == (422, "CSV row 2, column 'stem': inf is not a finite number (or is beyond float32's range, "
                              "about 3.4e38)")
    r = c.post(m["predict"], json={"records": [{**row, "stem": 3.4028235e38}]})          # float32's largest: fine
    assert r.status_code == 200, r.text
