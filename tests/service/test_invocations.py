"""POST /v1/models/{id}/invocations with the bodies MLflow's docs build (pandas to_json), answering predictions."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pytest

COLS = ["sepal", "petal", "stem", "leaf"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server, one 3-class model trained on a CSV with named columns."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.service.helpers import train_flowers

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("invocations") / "data", workers=1))
    with TestClient(app) as c:
        model_id, df, _ = train_flowers(c, COLS, epochs=5)
        rows = df[COLS].iloc[:12]
        ref = c.post(f"/v1/models/{model_id}/predict", json={"inputs": rows.to_numpy().tolist()}).json()
        yield c, {"url": f"/v1/models/{model_id}/invocations", "rows": rows, "ref": ref["predictions"]}


def _post_json(c, url, body: str | bytes):
    return c.post(url, content=body, headers={"Content-Type": "application/json"})


def test_dataframe_split_and_records_as_pandas_writes_them(shared):
    c, m = shared
    rows: pd.DataFrame = m["rows"]
    split = '{"dataframe_split": ' + rows.to_json(orient="split") + "}"
    records = '{"dataframe_records": ' + rows.to_json(orient="records") + "}"
    for body in (split, records):
        r = _post_json(c, m["url"], body)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": m["ref"]}


def test_columns_are_matched_by_name(shared):
    c, m = shared
    shuffled = m["rows"][["leaf", "stem", "sepal", "petal"]]
    r = _post_json(c, m["url"], '{"dataframe_split": ' + shuffled.to_json(orient="split") + "}")
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": m["ref"]}
    r = _post_json(c, m["url"], orjson.dumps({"inputs": {k: m["rows"][k].tolist() for k in reversed(COLS)}}))
    assert r.json() == {"predictions": m["ref"]}


def test_instances_inputs_and_csv(shared):
    c, m = shared
    rows = m["rows"].to_numpy().tolist()
    for body in ({"instances": rows}, {"inputs": rows}, {"inputs": rows, "params": {"anything": 1}},
                 {"instances": m["rows"].to_dict(orient="records")}):
        r = _post_json(c, m["url"], orjson.dumps(body))
        assert r.status_code == 200, (body, r.text)
        assert r.json() == {"predictions": m["ref"]}
    r = c.post(m["url"], content=m["rows"].to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": m["ref"]}
    # the training file's target column (species) is accepted and dropped, by name and in CSV
    labelled = m["rows"].assign(species="setosa")
    for r in (_post_json(c, m["url"], '{"dataframe_split": ' + labelled.to_json(orient="split") + "}"),
              c.post(m["url"], content=labelled.to_csv(index=False), headers={"Content-Type": "text/csv"})):
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": m["ref"]}


def test_invocation_errors_name_the_problem(shared):
    c, m = shared
    cases = [
        ({"rows": [[1, 2, 3, 4]]}, "the body must hold exactly one of dataframe_split, dataframe_records, instances, "
                                   "inputs (and optionally params), got ['rows']"),
        ({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
         "the body must hold exactly one of dataframe_split, dataframe_records, instances, inputs (and optionally "
         "params), got ['inputs', 'instances']"),
        ({"dataframe_records": [{"sepal": 1, "petal": 2, "stem": 3, "leaf": "x"}]},
         "dataframe_records: row 1, column 'leaf': expected a number, got 'x'"),
        ({"dataframe_split": {"columns": ["sepal", "petal", "stem", "root"], "data": [[1, 2, 3, 4]]}},
         "dataframe_split: unknown column 'root'; the model's columns are 'sepal', 'petal', 'stem', 'leaf'"),
        ({"instances": [[1, 2, 3]]}, "instances rows must have 4 values (the model's input width), got 3"),
        ({"instances": [[1, "2", 3, 4]]}, "instances[0][1] is not a number: '2'"),     # as by name: text is text
        ({"inputs": [[1, 2, 3, False]]}, "inputs[0][3] is not a number: false"),
    ]
    for body, detail in cases:
        r = _post_json(c, m["url"], orjson.dumps(body))
        assert (r.status_code, r.json().get("detail")) == (422, detail), r.text
    r = c.post("/v1/models/0123456789abcdef0123456789abcdef/invocations", json={"instances": [[1, 2, 3, 4]]})
    assert (r.status_code, r.json()["detail"]) == (404, "model 0123456789abcdef0123456789abcdef not found")
