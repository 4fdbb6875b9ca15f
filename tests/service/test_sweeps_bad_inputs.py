"""Sweeps given inputs that can only fail, and sweeps that fail: 422s naming the dimension and the limit at creation,
a driver that fails one sweep without stalling the others, honest end states (issue 17's attack, items 1-9, 15)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from service.app import create_app
from service.jobs.schemas import DEFAULTS as JOB_DEFAULTS, JobCreate
from service.jobs.tables import TERMINAL, Job
from service.settings import Settings
from service.sweeps import service as sweeps_service
from service.sweeps.tables import Sweep
from tests.service.test_sweeps import _dataset, _wait


@pytest.fixture
def idle(tmp_path):
    """A client of a server without workers (trials stay queued) and a digits data set of 40 rows (64 features)."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        yield c, _dataset(c, 40)


@pytest.mark.parametrize("dim", ["units", "activation", "learning_rate", "hidden_layers", "batch_size", "dropout",
                                 "optimizer", "weight_decay", "epochs"])
def test_an_empty_list_of_choices_is_a_422_naming_the_dimension(idle, dim):
    c, ds = idle
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 3, "space": {"epochs": 2, dim: []}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"space.{dim}: a list of choices needs at least one value"
    assert c.get("/v1/sweeps").json()["total"] == 0


LIMITS = Settings(data_dir="unused")  # the default limits the idle server runs with


@pytest.mark.parametrize("space, detail", [
    ({"units": {"low": 1, "high": 1_000_000_000}},
     "space.units: 1000000000 fails every trial that draws it (layers: one row needs 1,000,000,074 activation "
     f"values (input width plus every layer's units), more than the limit max_row_activations="
     f"{LIMITS.max_row_activations:,} (MLP_MAX_ROW_ACTIVATIONS))"),
    ({"units": {"low": 0, "high": 8}},
     "space.units: 0 fails every trial that draws it (layers.0.dense.units: Input should be greater than or "
     "equal to 1)"),
    ({"batch_size": [0, 16]},
     "space.batch_size: 0 fails every trial that draws it (batch_size: Input should be greater than or equal to 1)"),
    ({"batch_size": {"low": 16, "high": LIMITS.max_batch_size + 1}},
     f"space.batch_size: {LIMITS.max_batch_size + 1} fails every trial that draws it (batch_size: "
     f"{LIMITS.max_batch_size + 1} is more than the limit max_batch_size={LIMITS.max_batch_size} "
     "(MLP_MAX_BATCH_SIZE))"),
    ({"hidden_layers": {"low": 1, "high": 100}},
     f"space.hidden_layers: 100 fails every trial that draws it (layers: 101 layers exceed the limit "
     f"max_layers={LIMITS.max_layers} (MLP_MAX_LAYERS))"),
    ({"dropout": {"low": 0, "high": 1.5}},
     "space.dropout: 1.5 fails every trial that draws it (layers.1.dropout.rate: Input should be less than 1)"),
    ({"epochs": [0, 5]},
     "space.epochs: 0 fails every trial that draws it (epochs: Input should be greater than or equal to 1)"),
    ({"units": {"low": 16, "high": 64, "step": 100}},
     "space.units: step 100 is wider than the range 16..64, which then holds only 16; give a smaller step or the "
     "fixed value"),
])
def test_a_space_that_can_only_fail_is_a_422_naming_the_dimension_and_the_limit(idle, space, detail):
    c, ds = idle
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 3, "space": {"epochs": 2, **space}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail
    assert "errors.pydantic.dev" not in r.text


def test_bounds_that_fail_only_together_are_accepted(idle):
    """Each bound trains on its own (3 layers; 1024 units), so the space is accepted: only some trials can fail."""
    c, ds = idle
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 1, "space": {
        "hidden_layers": {"low": 1, "high": 3}, "units": {"low": 16, "high": 1024}, "batch_size": [1, 256]}})
    assert r.status_code == 202, r.text


def test_grid_fixes_the_default_ranges_it_cannot_enumerate(idle):
    c, ds = idle
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "grid",
                                   "space": {"units": [8, 16], "hidden_layers": [1, 2], "epochs": 2}})
    assert r.status_code == 202, r.text
    s = r.json()
    assert s["max_trials"] == 4
    assert s["request"]["space"]["learning_rate"] == JOB_DEFAULTS["optimizer"]["learning_rate"]
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "grid",
                                   "space": {"units": {"low": 16, "high": 64, "step": 16}, "epochs": 2}})
    assert r.status_code == 202, r.text
    assert r.json()["max_trials"] == 8  # hidden_layers' default 1..2 times units 16, 32, 48, 64
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "grid", "space": {"epochs": 2}})
    assert r.status_code == 202, r.text
    assert r.json()["request"]["space"]["units"] == 64 and r.json()["max_trials"] == 2
    r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "grid", "max_trials": 2,
                                   "space": {"learning_rate": {"low": 0.001, "high": 0.1}}})
    assert r.status_code == 422
    assert r.json()["detail"] == ("space.learning_rate: the grid strategy needs a list of values (or a range with a "
                                  "step), not a float range")


def test_a_sweep_whose_step_raises_fails_alone_and_the_others_go_on(tmp_path, monkeypatch):
    """One sweep's step raises at every round (an injected fault), another sweep was stored with an empty list of
    choices (as before creation refused them: Optuna raises on it): both end ``failed`` with the reason, and a
    third sweep created after them runs to the end."""
    real_step = sweeps_service.step
    faulty: set[str] = set()

    def step(session, executor, settings, *, sweep_id):
        if sweep_id in faulty:
            raise RuntimeError("injected fault")
        return real_step(session, executor, settings, sweep_id=sweep_id)

    monkeypatch.setattr(sweeps_service, "step", step)
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1))
    with TestClient(app) as c:
        ds = _dataset(c, 120)
        body = {"dataset_id": ds, "max_trials": 2, "pruner": "none",
                "space": {"epochs": 2, "hidden_layers": 1, "units": [8]}}
        faulty.add(c.post("/v1/sweeps", json=body).json()["id"])
        with app.state.sessionmaker() as session:  # a request stored before the empty-list check existed
            request = dict(c.post("/v1/sweeps", json={**body, "name": "template"}).json()["request"])
            request["space"] = {**request["space"], "units": []}
            old = Sweep(owner="default", name="old", request=request, status="running")
            session.add(old)
            session.commit()
            old_id = old.id
        good = c.post("/v1/sweeps", json=body).json()["id"]
        s = _wait(c, good, timeout=60)
        assert s["status"] == "succeeded" and s["counts"] == {"complete": 2}, s
        bad = _wait(c, next(iter(faulty)), timeout=20)
        assert bad["status"] == "failed", bad
        assert bad["reason"] == "the sweep driver could not step it: RuntimeError: injected fault"
        old = _wait(c, old_id, timeout=20)
        assert old["status"] == "failed", old
        assert old["reason"].startswith("the sweep driver could not step it: ValueError: "), old["reason"]


def test_a_sweep_with_no_complete_trial_is_failed_with_the_first_error(tmp_path):
    """3 layers and 4 units each pass the parameter limit alone (89 and 310 parameters with digits' 64 features and
    10 classes) but not together (350): every trial fails to start, and the sweep says so."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1, max_params=320))) as c:
        ds = _dataset(c, 120)
        r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "pruner": "none",
                                       "space": {"epochs": 2, "hidden_layers": 3, "units": [4]}})
        assert r.status_code == 202, r.text
        s = _wait(c, r.json()["id"], timeout=30)
    assert s["status"] == "failed" and s["counts"] == {"failed": 2}, s
    error = ("cannot start the trial: network_id: with 64 input features the network has 350 parameters, more than "
             "the limit max_params=320 (MLP_MAX_PARAMS)")
    assert s["reason"] == f"no trial completed: 2 failed (first error: {error}); max_trials=2 reached"
    assert s["best_model_id"] is None and all(t["error"] == error for t in s["trials"])


def test_a_trial_error_from_pydantic_is_readable():
    try:
        JobCreate(network_id="n", dataset_id="d", batch_size=0)
    except ValidationError as exc:
        why = sweeps_service._why(exc)
    assert why == "batch_size: Input should be greater than or equal to 1"


def test_a_trial_whose_job_succeeded_before_the_budget_cancel_is_complete(tmp_path, monkeypatch):
    """max_seconds passes while a trial runs; its job ends (succeeded, model saved) before the cancel reaches it
    (the injected delay makes the cancel wait for the job's end). The trial is complete with its value and model,
    and the sweep reports it as the best."""
    real_cancel = sweeps_service._cancel_job
    waited: list[str] = []

    def late_cancel(session, executor, *, owner, job_id):
        if job_id is not None:
            deadline = time.monotonic() + 120
            while session.scalar(select(Job.status).where(Job.id == job_id)) not in TERMINAL:
                assert time.monotonic() < deadline, "the trial's job did not end"
                session.rollback()
                time.sleep(0.05)
            waited.append(job_id)
        return real_cancel(session, executor, owner=owner, job_id=job_id)

    monkeypatch.setattr(sweeps_service, "_cancel_job", late_cancel)
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 300)
        # a trial takes ~2 s on a quiet machine (1,000 epochs in minibatches of 8 rows), so the budget passes while
        # the first trial's job is queued or running, whenever the driver's round falls (trials of 20 epochs ended
        # between rounds on a fast machine, and the budget then found no trial running)
        space = {"epochs": 1000, "hidden_layers": 1, "units": [8], "batch_size": [8]}
        r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 50, "max_seconds": 0.5, "pruner": "none",
                                       "parallelism": 1, "space": space})
        assert r.status_code == 202, r.text
        s = _wait(c, r.json()["id"], timeout=120)
        jobs = {j["id"]: j for j in c.get("/v1/jobs", params={"sweep_id": s["id"]}).json()["items"]}
    assert waited, "the budget never cancelled a running trial"
    assert s["status"] == "succeeded" and s["reason"] == "max_seconds=0.5 reached", s
    for t in s["trials"]:
        job = jobs[t["job_id"]]
        assert job["status"] == "succeeded", job
        assert t["status"] == "complete" and t["value"] is not None and t["model_id"] == job["model_id"], t
    assert s["best_model_id"] is not None and s["best_value"] is not None


def test_data_sets_and_trial_jobs_of_a_running_sweep_cannot_be_deleted(tmp_path):
    """No workers and a job quota of 1 held by a job on another data set: the sweep's trial waits (pending), so no
    job uses its data sets, and only the sweep protects them."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0, quota_max_jobs=1))) as c:
        ds, val, other = _dataset(c, 60), _dataset(c, 30), _dataset(c, 30)
        net = c.post("/v1/networks", json={"layers": [{"type": "dense", "units": 10, "activation": "softmax"}],
                                           "loss": "cross_entropy"}).json()
        hog = c.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": other, "epochs": 2}).json()
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "validation_dataset_id": val, "max_trials": 2,
                                         "space": {"epochs": 2}}).json()["id"]
        s = _wait(c, sid, timeout=20, until=lambda s: s["counts"].get("pending") == 1)
        assert s["trials"][0]["error"].startswith("waiting for a job slot: quota exceeded: tenant "), s["trials"]
        for d in (ds, val):
            r = c.delete(f"/v1/datasets/{d}")
            assert r.status_code == 409, r.text
            assert r.json()["detail"] == (f"dataset {d} is used by sweep {sid}, which is running; cancel the sweep "
                                          "or wait for it to finish first")
        assert c.post(f"/v1/jobs/{hog['id']}/cancel").status_code == 200  # the quota frees: the trial's job queues
        s = _wait(c, sid, timeout=20, until=lambda s: s["counts"].get("running") == 1)
        job_id = s["trials"][0]["job_id"]
        assert s["trials"][0]["error"] is None, s["trials"]  # started: it waits for nothing now
        r = c.delete(f"/v1/datasets/{ds}")  # its trial's job uses it too: the sweep is named, not the job
        assert r.status_code == 409 and r.json()["detail"] == (f"dataset {ds} is used by sweep {sid}, which is "
                                                               "running; cancel the sweep or wait for it to finish first")
        assert c.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        r = c.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == (f"job {job_id} is a trial of sweep {sid}, which is running; cancel the sweep "
                                      "or wait for it to finish first (deleting the sweep deletes its trials' jobs)")
        assert c.post(f"/v1/sweeps/{sid}/cancel").status_code == 200
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 204
        for d in (ds, val):
            assert c.delete(f"/v1/datasets/{d}").status_code == 204


def _trial_ids(c, sweep_id: str, last_id: str | None = None) -> list[int]:
    """The ids of the `trial` events of a finished sweep's stream (it ends with `end`)."""
    r = c.get(f"/v1/sweeps/{sweep_id}/events", headers={"Last-Event-ID": last_id} if last_id is not None else {})
    assert r.status_code == 200 and "event: end" in r.text, r.text
    return [int(block.split("\n")[0][4:]) for block in r.text.split("\n\n") if "event: trial" in block]


def test_sweep_events_resume_after_the_last_event_id(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 120)
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 3, "pruner": "none",
                                         "space": {"epochs": 2, "hidden_layers": 1, "units": [8]}}).json()["id"]
        _wait(c, sid, timeout=60)
        every = _trial_ids(c, sid)
        assert sorted(every) == [0, 1, 2]
        assert _trial_ids(c, sid, str(every[0])) == every[1:]
        assert _trial_ids(c, sid, str(every[-1])) == []
        for bad in ("abc", "-5", "99999", ""):  # not an ended trial's number: everything again
            assert _trial_ids(c, sid, bad) == every


def test_a_trial_model_is_kept_while_its_sweep_runs_and_shown_deleted_after(tmp_path):
    """Deleting a trial's model while its sweep runs is a 409 naming the sweep (as for the trial's job); once the
    sweep ended it may go, and the sweep then shows the trial's model (and the best model) as null, the trial
    keeping its rank and value and its error naming the deleted model."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 300)
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "parallelism": 1, "pruner": "none",
                                         "space": {"epochs": 600, "batch_size": [8], "hidden_layers": 1,
                                                   "units": [8]}}).json()["id"]
        s = _wait(c, sid, timeout=120, until=lambda s: s["counts"].get("complete") == 1 or s["status"] != "running")
        assert s["status"] == "running", s
        model_id = s["best_model_id"]
        r = c.delete(f"/v1/models/{model_id}")
        assert r.status_code == 409 and r.json()["detail"] == (
            f"model {model_id} is a trial's model of sweep {sid}, which is running; cancel the sweep or wait for it "
            "to finish first")
        assert c.post(f"/v1/sweeps/{sid}/cancel").status_code == 200
        assert c.delete(f"/v1/models/{model_id}").status_code == 204
        s = c.get(f"/v1/sweeps/{sid}").json()
        best = s["trials"][0]
        assert (best["rank"], best["status"], best["model_id"]) == (1, "complete", None) and best["value"] is not None
        assert best["error"] == f"its model {model_id} was deleted"
        assert s["best_trial"] == best["number"] and s["best_model_id"] is None
        assert c.get("/v1/sweeps").json()["items"][0]["best_model_id"] is None
