"""Batch scoring as a job: POST /v1/models/{id}/predictions with a stored data set, the job in GET /v1/jobs/{id},
the predictions file (CSV or Parquet) from GET /v1/models/{id}/predictions/{job_id}; 404, 422, 409, cancel."""

from __future__ import annotations

import io
import multiprocessing
import os

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import core
from service.app import create_app
from service.database import create_all, make_engine
from service.executor.worker import Worker
from service.jobs import service as jobs_service
from service.settings import Settings
from tests.service.helpers import UNKNOWN_ID, Tenant, add_keys, assert_same_404, train_blobs, wait_job
from tests.service.test_models import insert_model
from tests.service.test_preprocessing_api import churn_csv, train, upload_csv


def scoring_csv(n: int = 120, seed: int = 7) -> tuple[str, list[dict]]:
    """Rows to score, columns in another order than training, an extra `id` column, an unseen plan 'enterprise',
    blanks and NA; also the same rows as /v1 predict records (null where missing)."""
    rng = np.random.default_rng(seed)
    lines, records = ["id,region,label,plan,age"], []
    for i in range(n):
        age = None if rng.random() < 0.1 else int(rng.integers(18, 80))
        plan = None if rng.random() < 0.1 else str(rng.choice(["team", "pro", "basic", "enterprise"]))
        region = str(rng.choice(["us", "eu"]))
        label = "yes" if i % 2 else "no"
        lines.append(f"{i},{region},{label},{'NA' if plan is None else plan},{'' if age is None else age}")
        records.append({"age": age, "plan": plan, "region": region})
    return "\n".join(lines) + "\n", records


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server (one worker), a model trained on the churn CSV, and a data set to score."""
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("scoring") / "data", workers=1))
    with TestClient(app) as c:
        model_id = train(c, wait_job, upload_csv(c, churn_csv(), "churn.csv"), 2, epochs=8)["model_id"]
        text, records = scoring_csv()
        ds = upload_csv(c, text, "score.csv", target="label")
        yield {"client": c, "app": app, "model_id": model_id, "dataset": ds, "records": records}


def _score(c, model_id: str, dataset_id: str, **body) -> dict:
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": dataset_id, **body})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    assert r.json()["kind"] == "predict" and r.json()["model_id"] == model_id
    return wait_job(c, r.json()["id"], timeout=30)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_predictions_file_equals_v1_predict_on_the_same_rows(shared, fmt):
    c, model_id, ds, records = shared["client"], shared["model_id"], shared["dataset"], shared["records"]
    job = _score(c, model_id, ds["id"], **({"format": fmt} if fmt == "parquet" else {}))
    assert job["status"] == "succeeded", job
    assert job["progress"]["epoch"] == job["progress"]["epochs"] == len(records)
    assert job["progress"]["fraction"] == 1.0 and job["metrics"]["rows"] == len(records)

    r = c.get(f"/v1/models/{model_id}/predictions/{job['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv" if fmt == "csv" else "application/vnd.apache.parquet")
    assert f"predictions-{job['id']}.{fmt}" in r.headers["content-disposition"]
    table = (pcsv.read_csv(io.BytesIO(r.content)) if fmt == "csv" else pq.read_table(io.BytesIO(r.content)))

    want = c.post(f"/v1/models/{model_id}/predict", json={"records": records})
    assert want.status_code == 200, want.text
    want = want.json()
    classes = c.get(f"/v1/models/{model_id}").json()["classes"]
    assert table.column_names == ["prediction"] + [f"proba_{k}" for k in classes]
    assert table.num_rows == len(records)
    assert table.column("prediction").to_pylist() == want["predictions"]
    got = np.column_stack([table.column(f"proba_{k}").to_numpy() for k in classes])
    np.testing.assert_allclose(got, np.array(want["probabilities"]), rtol=0, atol=1e-6)


def test_unknown_model_or_data_set_is_404(shared):
    c, model_id, ds = shared["client"], shared["model_id"], shared["dataset"]
    r = c.post(f"/v1/models/{UNKNOWN_ID}/predictions", json={"dataset_id": ds["id"]})
    assert r.status_code == 404 and r.json()["detail"] == f"model {UNKNOWN_ID} not found"
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": UNKNOWN_ID})
    assert r.status_code == 404 and r.json()["detail"] == f"dataset {UNKNOWN_ID} not found"
    r = c.get(f"/v1/models/{model_id}/predictions/{UNKNOWN_ID}")
    assert r.status_code == 404 and r.json()["detail"] == f"job {UNKNOWN_ID} not found"
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": ds["id"], "format": "xlsx"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "format"]


def test_training_job_is_not_a_prediction_of_the_model(shared):
    c, model_id = shared["client"], shared["model_id"]
    train_job = c.get(f"/v1/models/{model_id}").json()["job_id"]
    assert c.get(f"/v1/jobs/{train_job}").json()["kind"] == "train"
    r = c.get(f"/v1/models/{model_id}/predictions/{train_job}")
    assert r.status_code == 404
    assert r.json()["detail"] == f"job {train_job} is not a batch prediction of model {model_id}"


def test_data_set_without_a_model_column_is_422_naming_it(shared):
    c, model_id = shared["client"], shared["model_id"]
    ds = upload_csv(c, "age,region,label\n30,eu,no\n61,us,yes\n", "noplan.csv", target="label")
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": ds["id"]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"dataset_id: data set {ds['id']} has no column 'plan', which the model "
                                         "takes as input")
    ds = upload_csv(c, "age,plan,region,label\n30,1,eu,no\n61,2,us,yes\n", "numplan.csv", target="label")
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": ds["id"]})
    assert r.status_code == 422
    assert r.json()["detail"] == (f"dataset_id: column 'plan' of data set {ds['id']} is numeric, the model takes "
                                  "it as categorical: no category is a number ('basic', 'pro', 'team')")


def _scored_as_records(c, model_id, csv_text: str, records: list[dict]):
    """Score the CSV as a stored data set, and the same rows as /v1 predict records and as a CSV predict body: the
    answers are equal."""
    ds = upload_csv(c, csv_text, "odd.csv", target="label")
    job = _score(c, model_id, ds["id"])
    assert job["status"] == "succeeded", job
    table = pcsv.read_csv(io.BytesIO(c.get(f"/v1/models/{model_id}/predictions/{job['id']}").content))
    for r in (c.post(f"/v1/models/{model_id}/predict", json={"records": records}),
              c.post(f"/v1/models/{model_id}/predict", content=csv_text.encode(), headers={"Content-Type": "text/csv"})):
        assert r.status_code == 200, r.text
        assert table.column("prediction").to_pylist() == r.json()["predictions"]
    return ds


def test_a_column_typed_otherwise_is_read_as_predict_reads_values(shared):
    """A scoring file whose column has no value at all (typed numeric) for the model's categorical 'plan'; and
    the other way round the kinds predict accepts by value."""
    c, model_id = shared["client"], shared["model_id"]
    ds = _scored_as_records(c, model_id, "age,plan,region,label\n30,,eu,no\n61,,us,yes\n",
                            [{"age": 30, "plan": None, "region": "eu"}, {"age": 61, "plan": None, "region": "us"}])
    assert {col["name"]: col["type"] for col in ds["columns"]}["plan"] == "numeric"


def test_boolean_and_number_categories_from_a_file_typed_otherwise(tmp_path):
    """A model trained on true/false 'member' and zip codes typed categorical scores a file where member is
    yes/no text and zip is numbers (read as predict reads {"member": "yes", "zip": 1234}); values it cannot
    take fail the job naming the column and the value."""
    rng = np.random.default_rng(3)
    lines = ["zip,member,label"]
    for i in range(120):
        z, m = str(rng.choice(["01234", "20500", "94110"])), bool(rng.random() < 0.5)
        lines.append(f"{z},{str(m).lower()},{'yes' if m or z == '20500' else 'no'}")
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1))
    with TestClient(app) as c:
        trained = upload_csv(c, "\n".join(lines) + "\n", "members.csv", categorical="zip")
        assert {col["name"]: col["type"] for col in trained["columns"]} == {"zip": "categorical",
                                                                             "member": "boolean"}
        model_id = train(c, wait_job, trained, 2, epochs=5)["model_id"]
        # zip as numbers read as the text a CSV cell holds: 1234 is not '01234' (Excel's stripped zero), as in a
        # CSV predict body of the same bytes
        _scored_as_records(c, model_id, "zip,member,label\n20500,yes,no\n94110,no,yes\n99999,YES,no\n1234,no,no\n",
                           [{"zip": "20500", "member": "yes"}, {"zip": "94110", "member": "no"},
                            {"zip": "99999", "member": "YES"}, {"zip": "1234", "member": "no"}])
        bad = upload_csv(c, "zip,member,label\n94110,maybe,no\n20500,no,yes\n", "bad.csv", target="label")
        r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": bad["id"]})
        assert r.status_code == 422
        assert r.json()["detail"] == (f"dataset_id: column 'member' of data set {bad['id']} is categorical, the "
                                      "model takes it as boolean: expected true or false, got 'maybe'")
        bad = upload_csv(c, "zip,member,label\n94110,2,no\n20500,0,yes\n", "bad2.csv", target="label")
        job = _score(c, model_id, bad["id"])
        assert job["status"] == "failed"
        assert job["error"].endswith(f"column 'member' of data set {bad['id']} is numeric, the model takes it as "
                                     "boolean: expected true or false, got 2.0"), job["error"]


def test_another_tenants_model_and_data_set_are_404(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1, api_key_recheck_seconds=0))
    keys = add_keys(app, "alice", "bob")
    with TestClient(app) as client:
        alice, bob = Tenant(client, keys["alice"]), Tenant(client, keys["bob"])
        a = train_blobs(alice)
        job = _score(alice, a["model_id"], a["dataset"]["id"])
        assert job["status"] == "succeeded", job
        assert_same_404(bob, "post", "/v1/models/{}/predictions", a["model_id"],
                        json={"dataset_id": a["dataset"]["id"]})
        b = train_blobs(bob)
        r = bob.post(f"/v1/models/{b['model_id']}/predictions", json={"dataset_id": a["dataset"]["id"]})
        assert r.status_code == 404 and r.json()["detail"] == f"dataset {a['dataset']['id']} not found"
        assert_same_404(bob, "get", f"/v1/models/{a['model_id']}/predictions/{{}}", job["id"])
        assert bob.get(f"/v1/jobs/{job['id']}").status_code == 404
        r = client.post(f"/v1/models/{a['model_id']}/predictions", json={"dataset_id": a["dataset"]["id"]})
        assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")
        r = client.get(f"/v1/models/{a['model_id']}/predictions/{job['id']}")
        assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")
        r = alice.get(f"/v1/models/{a['model_id']}/predictions/{job['id']}")
        assert r.status_code == 200 and r.text.startswith('"prediction","proba_0","proba_1","proba_2"')


# -- no worker: queued, 409, cancel (queued and running) --------------------------------------------------------
@pytest.fixture
def idle(tmp_path):
    """An app without workers, a regression model on columns x0, x1 and a data set of 50 rows to score."""
    app = create_app(Settings(data_dir=tmp_path / "data", workers=0))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2)).astype(np.float32)
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    core.fit(net, X, X[:, 0] - X[:, 1], epochs=2, seed=0)
    insert_model(app, net, model_id="r" * 32, task="regression")
    with TestClient(app) as c:
        r = c.post("/v1/datasets", json={"name": "score", "X": X.tolist(), "y": X[:, 0].tolist()})
        assert r.status_code == 201, r.text
        yield {"client": c, "app": app, "model_id": "r" * 32, "dataset_id": r.json()["id"], "X": X, "net": net}


def _worker(app) -> Worker:
    parent, child = multiprocessing.Pipe()
    w = Worker(app.state.settings, child, os.getppid())
    w._keep = parent  # the server end of the pipe stays open
    return w


def _key(app, job_id: str, fmt: str = "csv") -> bool:
    return app.state.storage.exists(f"jobs/{job_id}/predictions.{fmt}")


def test_download_before_the_job_finished_is_409_and_a_queued_cancel_leaves_no_file(idle):
    c, model_id = idle["client"], idle["model_id"]
    r = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": idle["dataset_id"]})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job_id = r.json()["id"]
    r = c.get(f"/v1/models/{model_id}/predictions/{job_id}")
    assert r.status_code == 409
    assert r.json()["detail"] == (f"job {job_id} is queued; its predictions can be downloaded once it has "
                                  "succeeded")
    r = c.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = c.get(f"/v1/models/{model_id}/predictions/{job_id}")
    assert r.status_code == 409 and r.json()["detail"].startswith(f"job {job_id} is cancelled: cancelled before")
    assert not _key(idle["app"], job_id)


def test_running_job_cancelled_leaves_no_file_and_a_worker_finishes_the_next(idle):
    c, app, model_id = idle["client"], idle["app"], idle["model_id"]
    first = c.post(f"/v1/models/{model_id}/predictions", json={"dataset_id": idle["dataset_id"]}).json()["id"]
    w = _worker(app)
    with app.state.sessionmaker() as session:
        attempt = jobs_service.claim(session, job_id=first, worker=w.name)
    assert attempt == 1
    r = c.post(f"/v1/jobs/{first}/cancel")                        # running: flagged, the worker stops
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    w.run_job(first, attempt)
    job = c.get(f"/v1/jobs/{first}").json()
    assert job["status"] == "cancelled" and job["error"] == "cancelled while running", job
    assert not _key(app, first)
    assert not list((app.state.storage.local_dir() / "jobs").rglob("*predictions*"))  # no temp file either

    second = c.post(f"/v1/models/{model_id}/predictions",
                    json={"dataset_id": idle["dataset_id"], "format": "parquet"}).json()["id"]
    with app.state.sessionmaker() as session:
        claim = jobs_service.claim_next(session, worker=w.name)
    assert claim == (second, 1)
    w.run_job(*claim)
    assert c.get(f"/v1/jobs/{second}").json()["status"] == "succeeded"
    r = c.get(f"/v1/models/{model_id}/predictions/{second}")
    assert r.status_code == 200
    got = pq.read_table(io.BytesIO(r.content)).column("prediction").to_numpy()
    np.testing.assert_allclose(got, idle["net"].predict(idle["X"]).reshape(-1), rtol=1e-6, atol=1e-6)
    w.engine.dispose()


def test_job_that_fails_leaves_no_file(idle):
    """A model whose output overflows on the data set's rows: the job fails naming the row, no file is stored."""
    c, app = idle["client"], idle["app"]
    net = core.Network.from_spec({"layers": [{"type": "dense", "units": 1}], "loss": "mse"})
    core.fit(net, np.ones((4, 2), np.float32), np.ones(4, np.float32), epochs=1)
    net.layers[0].params["W"][...] = 3e38
    insert_model(app, net, model_id="f" * 32, task="regression")
    job_id = c.post(f"/v1/models/{'f' * 32}/predictions", json={"dataset_id": idle["dataset_id"]}).json()["id"]
    w = _worker(app)
    with app.state.sessionmaker() as session:
        attempt = jobs_service.claim(session, job_id=job_id, worker=w.name)
    w.run_job(job_id, attempt)
    job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed", job
    assert job["error"].startswith("cannot score: rows 0..49 of the data set: row ")
    assert "the model's output is not finite" in job["error"]
    assert not _key(app, job_id)
    r = c.get(f"/v1/models/{'f' * 32}/predictions/{job_id}")
    assert r.status_code == 409 and r.json()["detail"].startswith(f"job {job_id} is failed: cannot score")
    w.engine.dispose()


def test_create_all_adds_the_kind_column_to_an_older_sqlite_file(tmp_path):
    """A SQLite file whose jobs table predates `kind` gains it (default 'train') when the server starts."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url))
    create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN kind")
        conn.exec_driver_sql("INSERT INTO jobs (id, owner, network_id, dataset_id, params, status, epoch, epochs, "
                             "cancel_requested, attempt, created_at, updated_at) VALUES ('j1', 'o', 'n', 'd', '{}', "
                             "'succeeded', 1, 1, 0, 1, '2026-01-01', '2026-01-01')")
    create_all(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT kind FROM jobs WHERE id = 'j1'").scalar() == "train"
    engine.dispose()
