"""Feature names from every upload path (CSV header, Parquet/Arrow schema, .npz and JSON ``feature_names``) are
kept as predict compares them (trimmed, Unicode NFC), none empty and none twice: a model can always be queried by
its own names."""

from __future__ import annotations

import io
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from tests.service.helpers import mlp_spec


def _npz(names) -> bytes:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, len(names))).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, X=X, y=(X[:, 0] > 0).astype(int), feature_names=np.array(names))
    return buf.getvalue()


def _table_file(names, kind: str) -> bytes:
    rng = np.random.default_rng(0)
    cols = {n: rng.normal(size=40) for n in names}
    first = cols[names[0]]
    table = pa.table({**cols, "y": np.where(first > 0, "p", "q")})
    buf = io.BytesIO()
    pq.write_table(table, buf) if kind == "parquet" else feather.write_feather(table, buf)
    return buf.getvalue()


def _upload(client, names, kind):
    if kind == "json":
        X = np.arange(2.0 * len(names)).reshape(2, len(names)).tolist()
        return client.post("/v1/datasets", json={"X": X, "y": [0, 1], "feature_names": names})
    content = _npz(names) if kind == "npz" else _table_file(names, kind)
    return client.post("/v1/datasets", files={"file": (f"d.{kind}", content, "application/octet-stream")})


@pytest.mark.parametrize("kind", ["npz", "json", "parquet", "arrow"])
def test_names_that_differ_only_by_spaces_are_one_name_given_twice(client, kind):
    what = "feature_names" if kind in ("npz", "json") else "header"
    r = _upload(client, [" a", "a ", "b"], kind)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (f"{what} names column 'a' more than once (names are compared with surrounding "
                                  f"spaces trimmed)")


@pytest.mark.parametrize("kind", ["npz", "json"])
def test_duplicate_and_empty_feature_names_are_422_at_upload(client, kind):
    r = _upload(client, ["a", "a", "b"], kind)
    assert r.status_code == 422 and r.json()["detail"] == \
        "feature_names names column 'a' more than once (names are compared with surrounding spaces trimmed)"
    r = _upload(client, ["a", " ", "b"], kind)
    assert r.status_code == 422 and r.json()["detail"] == "feature_names[1] is empty", r.text


@pytest.mark.parametrize("kind", ["npz", "json", "parquet", "arrow"])
def test_names_are_stored_trimmed_and_nfc(client, kind):
    decomposed = unicodedata.normalize("NFD", "café")
    r = _upload(client, [" a", f"{decomposed} "], kind)
    assert r.status_code == 201, r.text
    assert r.json()["feature_names"] == ["a", "café"]


@pytest.mark.parametrize("kind", ["npz", "parquet"])
def test_a_model_with_padded_names_is_queried_by_its_names(client, wait_job, make_network, kind):
    """The attack's case: a signal column ' a' beside a noise column 'b '; records by name and positional inputs
    give the same answer (before: a 500, or the signal silently imputed)."""
    ds = _upload(client, [" a", "b "], kind).json()
    net = make_network(client, mlp_spec(2, hidden=8))
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 40,
                                      "batch_size": 8, "optimizer": {"type": "adam", "learning_rate": 0.05}})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    mid = job["model_id"]
    schema = client.get(f"/v1/models/{mid}").json()["input_schema"]
    assert [c["name"] for c in schema] == ["a", "b"]
    by_inputs = client.post(f"/v1/models/{mid}/predict", json={"inputs": [[3, 0], [-3, 0]]}).json()
    for body in ({"records": [{"a": 3, "b": 0}, {"a": -3, "b": 0}]},
                 {"records": [{" a ": 3, "b": 0}, {"a": -3, "b ": 0}]},
                 {"columns": ["b", "a"], "data": [[0, 3], [0, -3]]}):
        r = client.post(f"/v1/models/{mid}/predict", json=body)
        assert r.status_code == 200 and r.json() == by_inputs, (body, r.text)
    assert len(set(by_inputs["predictions"])) == 2, by_inputs
