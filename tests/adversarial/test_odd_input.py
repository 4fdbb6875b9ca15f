"""Odd input that once answered 500: NaN literals, lone surrogates, CJK file names, keys files with the fields
swapped. Each is a 4xx naming the problem (or a 201 for the file name)."""

from __future__ import annotations

import pytest

from service.app import create_app
from service.settings import Settings

NET = ('{"name": %s, "input_dim": %s, "layers": [{"type": "dense", "units": 2, "activation": "softmax"}], '
       '"loss": "cross_entropy"}')
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("name,input_dim", [('"a"', "NaN"), ('"a"', "-Infinity"), ('"a"', "Infinity")])
def test_nan_literal_in_a_network_body_is_a_422(client, name, input_dim):
    r = client.post("/v1/networks", content=NET % (name, input_dim), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("the body is not valid JSON: NaN and Infinity are not JSON numbers")


@pytest.mark.parametrize("body", ['{"network_id": "x", "dataset_id": "y", "validation_split": NaN}',
                                  '{"network_id": "x", "dataset_id": "y", "optimizer": '
                                  '{"type": "adam", "learning_rate": NaN}}'])
def test_nan_literal_in_a_job_body_is_a_422(client, body):
    r = client.post("/v1/jobs", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert "NaN and Infinity are not JSON numbers" in r.json()["detail"]


@pytest.mark.parametrize("path,body", [
    ("/v1/networks", NET % ('"\\ud800"', "2")),
    ("/v1/jobs", '{"network_id": "\\ud800", "dataset_id": "y"}'),
    ("/v1/datasets", '{"name": "\\udfff", "X": [[1.0], [2.0]], "y": [0, 1]}'),
    ("/v1/datasets", '{"name": "a", "X": [[1.0], [2.0]], "y": ["\\ud800", "b"]}'),
])
def test_lone_surrogate_in_a_json_string_is_a_422(client, path, body):
    r = client.post(path, content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("the body is not valid JSON")
    assert "surrogate" in r.json()["detail"]


def test_validation_errors_echo_input_safely(client):
    """A 422 from pydantic echoes the input: a NaN in it (through a query-free path) is rendered, not a 500."""
    from service.errors import validation_detail

    detail = validation_detail([{"type": "t", "loc": ("body", "x"), "msg": "m", "input": float("nan"),
                                 "ctx": {"s": "\ud800", "big": "x" * 10_000}}])
    assert detail[0]["input"] == "nan" and detail[0]["ctx"]["s"] == "\\ud800"
    assert len(detail[0]["ctx"]["big"]) < 300


@pytest.mark.parametrize("filename", ["数据.csv", "données.csv", "データ セット.csv"])
def test_cjk_and_accented_file_names_upload(client, filename):
    r = client.post("/v1/datasets", files={"file": (filename, b"a,b\n1,0\n2,1\n3,0\n4,1\n", "text/csv")},
                    data={"name": "名前"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "名前" and r.json()["n_samples"] == 4


def test_cjk_file_name_names_the_dataset_when_no_name_is_given(client):
    r = client.post("/v1/datasets", files={"file": ("数据.csv", b"a,b\n1,0\n2,1\n3,0\n4,1\n", "text/csv")})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "数据"


def test_cjk_file_name_of_an_unsupported_type_is_a_415_naming_it(client):
    r = client.post("/v1/datasets", files={"file": ("数据.xlsx", b"PK\x03\x04", "application/octet-stream")})
    assert r.status_code == 415, r.text
    assert "数据.xlsx" in r.json()["detail"]


SECRET = "mlp_0123456789ab_S3cr3tS3cr3tS3cr3tS3cr3t"


@pytest.mark.parametrize("content,message", [
    (f"{SECRET}:erin\n", "line 1: the tenant field holds what looks like a key"),
    (f"erin:erin-key-0123456789abcdef\n# x\nfrank-key-0123456789abcdef:frank\n", "line 3: the key must be"),
    (f'{{"{SECRET}": "erin"}}', "entry 1: the tenant field holds what looks like a key"),
    (f'[{{"tenant": "{SECRET}", "key": "erin"}}]', "entry 1: the tenant field holds what looks like a key"),
    ('[{"tenant": "no spaces allowed", "key": "0123456789abcdef01"}]', "entry 1: the tenant is not a valid"),
])
def test_keys_file_with_swapped_fields_names_the_line_not_the_key(tmp_path, content, message):
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ValueError) as info:  # create_app reads the file: a bad one stops it
        create_app(Settings(data_dir=tmp_path / "d", workers=0, api_keys_file=path))
    assert message in str(info.value)
    for secret in (SECRET, "S3cr3t", "frank-key-0123456789abcdef", "erin"):
        assert secret not in str(info.value)


def test_requests_that_are_not_http_get_a_json_400_naming_the_fault(live_server):
    """An absurd Content-Length or a broken header is refused by the HTTP parser: a JSON 400 as every other error
    (uvicorn's own is plain text), then the connection closes; the server goes on serving."""
    import json
    import socket

    srv = live_server(workers=0)
    cases = [(b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
              "Content-Length overflow"),
             (b"POST /v1/networks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
              "Invalid character in Content-Length"),
             (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "Invalid header token")]
    for raw, fault in cases:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while chunk := s.recv(4096):                             # read until the server closes
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), data
        assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
        assert json.loads(body) == {"detail": f"the request is not valid HTTP/1.1: {fault}"}
    with srv.client() as http:
        assert http.get("/healthz").status_code == 200
