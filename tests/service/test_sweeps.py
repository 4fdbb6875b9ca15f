"""Hyper-parameter sweeps (issue 17): seeded proposals, pruning, cancel, tenancy, quota, kill -9 and restart."""

from __future__ import annotations

import time
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from service.app import create_app
from service.keys import service as keys_service
from service.settings import Settings
from service.sweeps import search
from service.sweeps.schemas import SweepCreate

TERMINAL = ("succeeded", "failed", "cancelled")


def digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of scikit-learn's bundled 8x8 digits: X float (n, 64), y int (n,)."""
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def _dataset(c, n: int = 300, headers=None) -> str:
    X, y = digits(n)
    r = c.post("/v1/datasets", json={"name": "digits", "X": X.tolist(), "y": y.tolist()}, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _wait(c, sweep_id: str, *, timeout: float, until=TERMINAL, headers=None, poll: float = 0.1) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = c.get(f"/v1/sweeps/{sweep_id}", headers=headers or {}).json()
        if until(s) if callable(until) else s["status"] in until:
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"sweep {sweep_id} still {s['status']} after {timeout}s: {s['counts']}")
        time.sleep(poll)


# -- proposals ---------------------------------------------------------------------------------------------
def _propose(body: dict, n: int) -> list[dict]:
    """The driver's ask path (search.propose) for n trials, each told a fixed function's value."""
    req = SweepCreate(**body)
    rows = []
    for number in range(n):
        params = search.propose(req, "s", rows, number=number)
        value = -abs(np.log10(params["learning_rate"]) + 2) + params["hidden_layers"] * 0.01
        rows.append(SimpleNamespace(number=number, params=params, status="complete", value=value, intermediate={}))
    return [r.params for r in rows]


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe"])
def test_proposals_are_reproducible_from_the_seed(strategy):
    space = {"hidden_layers": [1, 2, 3], "units": [16, 64], "learning_rate": [1e-3, 1e-2, 1e-1]}
    if strategy != "grid":
        space.update(units={"low": 16, "high": 256, "log": True},
                     learning_rate={"low": 1e-4, "high": 1e-1, "log": True}, hidden_layers={"low": 1, "high": 3})
    body = {"dataset_id": "d", "strategy": strategy, "max_trials": 14, "space": space, "direction": "maximize"}
    first, again = _propose(dict(body, seed=7), 14), _propose(dict(body, seed=7), 14)
    other = _propose(dict(body, seed=8), 14)
    assert first == again
    assert first != other
    if strategy == "grid":  # 3 x 2 x 3 points, each once
        assert len({tuple(sorted(p.items())) for p in first[:14]}) == 14
    else:
        assert all(16 <= p[f"units_{i}"] <= 256 for p in first for i in range(1, p["hidden_layers"] + 1))
        assert all(1e-4 <= p["learning_rate"] <= 1e-1 for p in first)


def test_a_random_or_tpe_proposal_never_repeats_a_trial_and_a_covered_space_ends_the_sweep(tmp_path):
    """Random and TPE draw with replacement: in a small space they proposed the same parameters again (the same
    job, seed and result). A repeat is asked again with another seed, and once every point of a finite space was
    tried the sweep ends saying so, whatever max_trials is left."""
    for strategy in ("random", "tpe"):
        body = {"dataset_id": "d", "strategy": strategy, "max_trials": 12, "seed": 3, "direction": "maximize",
                "space": {"hidden_layers": 1, "units": [4, 8], "learning_rate": [0.01, 0.1], "epochs": 1}}
        first = _propose(body, 4)
        assert len({tuple(sorted(p.items())) for p in first}) == 4, first  # the 4 points, each once
        assert first == _propose(body, 4)                                  # and reproducibly so
    # seed 0 drew an index already tried at trial 2 in all 10 attempts in every 3-point space (1.7% each): an
    # untried point of the (enumerated) space is taken then
    for strategy, dim in (("random", {"learning_rate": [0.01, 0.02, 0.03]}), ("tpe", {"epochs": [1, 2, 3]}),
                          ("random", {"batch_size": [16, 32, 64], "learning_rate": 0.01}),
                          ("random", {"dropout": {"low": 0.0, "high": 0.8, "step": 0.1}, "learning_rate": 0.01})):
        space = {"epochs": 1, "hidden_layers": 1, "units": 8, "learning_rate": 0.01, **dim}
        n = 9 if "dropout" in dim else 3
        got = _propose({"dataset_id": "d", "strategy": strategy, "max_trials": n, "seed": 0, "space": space,
                        "direction": "maximize"}, n)
        assert len({tuple(sorted(p.items())) for p in got}) == n, (dim, got)
    req = SweepCreate(dataset_id="d", max_trials=1, space={"hidden_layers": [0, 2], "units": [4, 8, 16],
                                                           "dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
                                                           "learning_rate": 0.01})
    assert search.space_size(req) == (1 + 3 ** 2) * 4  # units_1, units_2 per depth; 4 dropout steps
    assert search.space_size(req.model_copy(update={"space": req.space.model_copy(update={"shared_units": True})})) \
        == 2 * 3 * 4
    assert search.space_size(SweepCreate(dataset_id="d", max_trials=1)) is None  # a float range: infinite
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 60)
        for space, reason, n in (({"hidden_layers": 1, "units": [4, 8], "learning_rate": 0.01, "epochs": 1},
                                  "all 2 points of the space tried", 2),
                                 ({"hidden_layers": 1, "units": 4, "learning_rate": 0.01, "epochs": 1},
                                  "the one point of the space tried", 1)):
            r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "random", "max_trials": 10,
                                           "parallelism": 2, "pruner": "none", "space": space})
            s = _wait(c, r.json()["id"], timeout=60)
            assert (s["status"], s["reason"], s["counts"]) == ("succeeded", reason, {"complete": n}), s


def test_the_same_request_proposes_the_same_trials_through_the_api(tmp_path):
    """No workers: the driver asks `parallelism` trials, queued as jobs; two equal requests get equal trials."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        ds = _dataset(c, 60)
        body = {"dataset_id": ds, "strategy": "tpe", "seed": 3, "max_trials": 10, "parallelism": 3,
                "space": {"epochs": 2, "activation": ["relu", "tanh"], "dropout": {"low": 0, "high": 0.5}}}
        ids = [c.post("/v1/sweeps", json=body).json()["id"] for _ in range(2)]
        got = [_wait(c, i, timeout=20, until=lambda s: s["counts"].get("running", 0) == 3) for i in ids]
        params = [sorted((t["number"], t["params"]) for t in s["trials"]) for s in got]
        params = [[(n, sorted(p.items())) for n, p in ps] for ps in params]
        assert params[0] == params[1] and len(params[0]) == 3
        jobs = c.get("/v1/jobs", params={"sweep_id": ids[0]}).json()
        assert jobs["total"] == 3 and {j["sweep_id"] for j in jobs["items"]} == {ids[0]}
        assert {j["status"] for j in jobs["items"]} == {"queued"}
        assert {j["id"] for j in jobs["items"]} == {t["job_id"] for t in got[0]["trials"]}
        assert c.post(f"/v1/sweeps/{ids[0]}/cancel").status_code == 200
        r = c.get(f"/v1/sweeps/{ids[0]}/events")  # the sweep ended: its trials' events, then `end`
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [block.split("\n") for block in r.text.strip().split("\n\n")]
        assert [e[1] for e in events[:3]] == ["event: trial"] * 3 and [e[0] for e in events[:3]] == [
            "id: 0", "id: 1", "id: 2"]
        assert events[3][0] == "event: end" and '"status":"cancelled"' in events[3][1]


def test_hyperband_and_median_prune_from_intermediate_values():
    """Optuna's pruners judge a running trial from the stored per-epoch values of the others."""
    for pruner in ("median", "hyperband"):
        req = SweepCreate(dataset_id="d", max_trials=9, pruner=pruner, pruner_startup_trials=2,
                          space={"epochs": 9, "learning_rate": [0.1, 0.01]}, direction="maximize")
        good = [SimpleNamespace(number=i, params={"hidden_layers": 1, "units_1": 16, "learning_rate": 0.1},
                                status="complete", value=0.9, intermediate={str(e): 0.9 for e in range(1, 10)})
                for i in range(12)]
        bad = SimpleNamespace(number=12, params={"hidden_layers": 1, "units_1": 16, "learning_rate": 0.01},
                              status="running", value=None, intermediate={})
        st = search.study(req, "s", good + [bad], number=13)
        # with seed 0 (search.study_name) trial 12 falls in Hyperband's bracket 1 (first rung at epoch 3), with
        # trials 0, 3, 5, 7 and 8
        assert search.should_prune(st, 12, {e: 0.1 for e in range(1, 10)}) is True, pruner
        st = search.study(req, "s", good + [bad], number=13)
        assert search.should_prune(st, 12, {e: 0.95 for e in range(1, 10)}) is False, pruner


@pytest.mark.parametrize("kept", [False, True])
@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_rebuilt_studies_prune_as_one_live_optuna_study(pruner, kept):
    """The driver rebuilds the study from the rows before judging each epoch; its decisions equal those of one
    Optuna study living through the same trials (ask, report and should_prune each epoch, tell). ``kept``: the
    driver's judging study, kept between rounds while what the pruner reads is unchanged, decides the same."""
    import optuna

    req = SweepCreate(dataset_id="d", max_trials=14, pruner=pruner, pruner_startup_trials=2, strategy="random",
                      space={"epochs": 9}, direction="maximize")
    rng = np.random.default_rng(2)
    # learning curves; every third one collapses after its first epoch (judged again at a later rung, not twice
    # at the first: a rebuilt study that forgot the rungs a running trial passed pruned these an epoch early)
    curves = [{e: float(q * (1 - np.exp(-e / tau)) * (0.3 if e >= 2 and n % 3 == 2 else 1)) for e in range(1, 10)}
              for n, (q, tau) in enumerate(zip(rng.uniform(0.3, 1.0, 14), rng.uniform(1, 4, 14)))]

    live = optuna.create_study(study_name=search.study_name(req), direction="maximize", pruner=search.pruner(req, 9))
    expected = []
    for curve in curves:
        trial, stop = live.ask(), None
        for e, v in curve.items():
            trial.report(v, e)
            if trial.should_prune():
                stop = e
                break
        live.tell(trial, state=optuna.trial.TrialState.PRUNED) if stop else live.tell(trial, curve[9])
        expected.append(stop)

    rows, got = [], []
    for n, curve in enumerate(curves):
        row = SimpleNamespace(number=n, params={}, status="running", value=None, intermediate={})
        stop = None
        for e, v in curve.items():  # one driver step per epoch: rebuild, then judge the new epoch
            row.intermediate[str(e)] = v
            st = (search.judging_study(req, "s", rows + [row], running={n: e}) if kept else
                  search.study(req, "s", rows + [row], number=n + 1, running={n: e}))
            if search.should_prune(st, n, {int(k): x for k, x in row.intermediate.items()}):
                stop = e
                break
        row.status, row.value = ("pruned", None) if stop else ("complete", curve[9])
        rows.append(row)
        got.append(stop)
    assert got == expected
    assert any(expected) and not all(expected), expected  # some trials pruned, some not


def test_create_errors_name_the_field(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0, max_epochs=50))) as c:
        ds = _dataset(c, 40)
        r = c.post("/v1/sweeps", json={"dataset_id": "nope", "max_trials": 2})
        assert r.status_code == 404 and r.json()["detail"] == "dataset nope not found"
        r = c.post("/v1/sweeps", json={"dataset_id": ds})
        assert r.status_code == 422 and "give a budget: max_trials and/or max_seconds" in str(r.json()["detail"])
        r = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "grid",
                                       "space": {"units": {"low": 16, "high": 128, "log": True}}})
        assert r.status_code == 422
        assert r.json()["detail"] == "space.units: the grid strategy needs a list of values, not a log range"
        r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "metric": "val_r2"})
        assert r.status_code == 422 and r.json()["detail"].startswith("metric: 'val_r2' is not available for "
                                                                      "classification")
        r = c.post("/v1/sweeps", json={"dataset_id": ds, "max_trials": 2, "space": {"epochs": [10, 60]}})
        assert r.status_code == 422
        assert r.json()["detail"] == ("space.epochs: 60 fails every trial that draws it (epochs: 60 is more than "
                                      "the limit max_epochs=50 (MLP_MAX_EPOCHS))")
        r = c.get("/v1/sweeps/unknown")
        assert r.status_code == 404 and r.json()["detail"] == "sweep unknown not found"


# -- running sweeps --------------------------------------------------------------------------------------
def test_pruning_stops_the_deliberately_bad_trials(tmp_path):
    """A grid of two good and two hopeless learning rates (seed 4 runs the good ones first, as its two start-up
    trials): the median rule stops the hopeless ones after their first epoch, and cancels their jobs. 200 epochs:
    a hopeless trial of 25 epochs of a few ms each could end before the verdict (~50-100 ms after the epoch)."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 400)
        r = c.post("/v1/sweeps", json={
            "dataset_id": ds, "strategy": "grid", "seed": 4, "parallelism": 1, "pruner": "median",
            "pruner_startup_trials": 2, "metric": "val_accuracy",
            "space": {"hidden_layers": 1, "units": [32], "learning_rate": [0.02, 0.01, 1e-7, 2e-7],
                      "epochs": 200, "batch_size": 8}})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/sweeps/{r.json()['id']}"
        s = _wait(c, r.json()["id"], timeout=120)
        assert s["status"] == "succeeded" and s["reason"] == "all 4 points of the grid tried", s
        by_lr = {t["params"]["learning_rate"]: t for t in s["trials"]}
        for lr in (0.02, 0.01):
            assert by_lr[lr]["status"] == "complete" and by_lr[lr]["value"] > 0.8, by_lr[lr]
        for lr in (1e-7, 2e-7):
            t = by_lr[lr]
            assert t["status"] == "pruned" and t["epoch"] == 1 and t["value"] is None, t
            deadline = time.monotonic() + 10  # the last one may still be stopping (within one minibatch)
            while (job := c.get(f"/v1/jobs/{t['job_id']}").json())["status"] == "running":
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["status"] == "cancelled" and job["progress"]["epoch"] < 200, job
        assert [t["rank"] for t in s["trials"]] == [1, 2, None, None]
        assert s["best_model_id"] == s["trials"][0]["model_id"] is not None
        assert s["best_value"] == max(by_lr[0.02]["value"], by_lr[0.01]["value"])
        assert "learning_rate" in s["importances"]
        assert c.get(f"/v1/models/{s['best_model_id']}").status_code == 200


def test_cancel_stops_every_running_trial_and_delete(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=2))) as c:
        ds = _dataset(c, 300)
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "random", "max_trials": 6, "parallelism": 2,
                                         "pruner": "none", "space": {"epochs": 1000, "batch_size": 4}}).json()["id"]

        def both_training(s):
            jobs = c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]
            return len(jobs) == 2 and all(j["status"] == "running" and j["progress"]["epoch"] >= 1 for j in jobs)
        _wait(c, sid, timeout=90, until=both_training)
        r = c.delete(f"/v1/sweeps/{sid}")
        assert r.status_code == 409 and r.json()["detail"] == f"sweep {sid} is running; cancel it first"
        t0 = time.monotonic()
        r = c.post(f"/v1/sweeps/{sid}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert r.json()["counts"] == {"cancelled": 2}
        while any(j["status"] != "cancelled" for j in c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]):
            assert time.monotonic() - t0 < 10, "trial jobs still running 10 s after the cancel"
            time.sleep(0.05)
        jobs = c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]
        assert all(j["progress"]["epoch"] < 1000 for j in jobs)
        trials = c.get(f"/v1/sweeps/{sid}").json()["trials"]  # the epochs they trained (was 0 without a pruner)
        assert all(t["status"] == "cancelled" and 1 <= t["epoch"] <= t["job_epoch"] for t in trials), trials
        r = c.post(f"/v1/sweeps/{sid}/cancel")
        assert r.status_code == 409
        assert r.json()["detail"] == f"sweep {sid} is already cancelled; only a running sweep can be cancelled"
        time.sleep(0.5)  # the driver proposes nothing more
        assert c.get("/v1/jobs", params={"sweep_id": sid}).json()["total"] == 2
        assert c.get("/v1/sweeps").json()["total"] == 1
        assert c.delete(f"/v1/sweeps/{sid}").status_code == 204
        assert c.get(f"/v1/sweeps/{sid}").status_code == 404
        assert c.get("/v1/jobs", params={"sweep_id": sid}).json()["total"] == 0
        assert c.get("/v1/sweeps").json() == {"items": [], "total": 0}


def test_tenancy_and_the_job_quota(tmp_path):
    """Another tenant's sweep is the same 404 as an unknown one; a sweep's trials count against the job quota."""
    app = create_app(Settings(data_dir=tmp_path / "data", workers=0, quota_max_jobs=2))
    with app.state.sessionmaker() as session:
        _, ka = keys_service.create(session, tenant="alice")
        _, kb = keys_service.create(session, tenant="bob")
    a, b = {"Authorization": f"Bearer {ka}"}, {"Authorization": f"Bearer {kb}"}
    with TestClient(app) as c:
        ds = _dataset(c, 60, headers=a)
        sid = c.post("/v1/sweeps", headers=a, json={"dataset_id": ds, "max_trials": 5, "parallelism": 4,
                                                   "space": {"epochs": 2}}).json()["id"]
        _wait(c, sid, timeout=20, headers=a, until=lambda s: s["counts"].get("running", 0) == 2)
        # the driver keeps trying: the quota holds the sweep at 2 queued trials and a third one pending
        _wait(c, sid, timeout=20, headers=a, until=lambda s: s["counts"].get("pending", 0) == 1)
        time.sleep(0.5)  # a few more driver rounds: still no third job
        s = c.get(f"/v1/sweeps/{sid}", headers=a).json()
        assert s["counts"] == {"running": 2, "pending": 1}, s["counts"]
        pending = next(t for t in s["trials"] if t["status"] == "pending")
        assert pending["job_id"] is None and pending["error"] == (  # what it waits for, in the quota's words
            "waiting for a job slot: quota exceeded: tenant alice already has 2 queued or running jobs, the limit "
            "quota_max_jobs (MLP_QUOTA_MAX_JOBS)=2; wait for one to finish or cancel one"), pending
        assert c.get("/v1/jobs", headers=a, params={"sweep_id": sid}).json()["total"] == 2
        net = c.post("/v1/networks", headers=a, json={"layers": [{"type": "dense", "units": 10,
                                                                  "activation": "softmax"}],
                                                       "loss": "cross_entropy"}).json()
        r = c.post("/v1/jobs", headers=a, json={"network_id": net["id"], "dataset_id": ds, "epochs": 2})
        assert r.status_code == 429
        assert r.json()["detail"].startswith("quota exceeded: tenant alice already has 2 queued or running jobs")
        for path in (f"/v1/sweeps/{sid}", "/v1/sweeps/unknown"):
            r = c.get(path, headers=b)
            assert r.status_code == 404 and r.json()["detail"] == f"sweep {path.rsplit('/', 1)[1]} not found"
        for method, path in (("post", f"/v1/sweeps/{sid}/cancel"), ("delete", f"/v1/sweeps/{sid}"),
                             ("get", f"/v1/sweeps/{sid}/events")):
            r = c.request(method.upper(), path, headers=b)
            assert r.status_code == 404 and r.json()["detail"] == f"sweep {sid} not found"
        assert c.get("/v1/sweeps", headers=b).json() == {"items": [], "total": 0}
        assert c.get("/v1/jobs", headers=b, params={"sweep_id": sid}).json()["total"] == 0
        r = c.post("/v1/sweeps", headers=b, json={"dataset_id": ds, "max_trials": 1})
        assert r.status_code == 404 and r.json()["detail"] == f"dataset {ds} not found"
        assert c.get("/v1/sweeps", headers=a).json()["total"] == 1
        cancelled = c.post(f"/v1/sweeps/{sid}/cancel", headers=a).json()
        assert cancelled["counts"] == {"cancelled": 3}
        errors = {t["number"]: t["error"] for t in cancelled["trials"]}  # its jobs' words; the pending trial:
        assert errors == {0: "cancelled before it started", 1: "cancelled before it started", 2: None}  # no wait
        assert c.post("/v1/jobs", headers=a, json={"network_id": net["id"], "dataset_id": ds,
                                                   "epochs": 2}).status_code == 202


def test_kill9_of_the_server_mid_sweep_then_restart_reaches_the_same_ranking(live_server):
    """A reference sweep runs uninterrupted; the same request again is killed (-9) while a trial trains. After
    the restart the sweep goes on: finished trials are not re-run, the interrupted trial's job resumes (attempt
    2), and the ranking (params and metric of every trial) equals the reference's. Three small trials: one done
    before the kill, one interrupted, one after; 300 short epochs (~1 s on a quiet machine) give the kill a wide
    window (60 epochs were missed between two polls on a loaded one)."""
    srv = live_server(workers=1, env={"MLP_SWEEP_LEASE_SECONDS": "1"})
    X, y = digits(200)
    with srv.client() as c:
        ds = c.post("/v1/datasets", json={"name": "digits", "X": X.tolist(), "y": y.tolist()}).json()["id"]
        body = {"dataset_id": ds, "strategy": "random", "seed": 5, "max_trials": 3, "parallelism": 1,
                "pruner": "none", "space": {"epochs": 300, "batch_size": 8, "units": {"low": 8, "high": 32}}}
        ref = _wait(c, c.post("/v1/sweeps", json=body).json()["id"], timeout=120)
        sid = c.post("/v1/sweeps", json=body).json()["id"]

        def mid_trial(s):  # an epoch committed implies the attempt's first checkpoint is on disk
            jobs = c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]
            return s["counts"].get("complete", 0) >= 1 and any(
                j["status"] == "running" and 1 <= j["progress"]["epoch"] <= 200 for j in jobs)
        before = _wait(c, sid, timeout=120, until=mid_trial, poll=0.02)
    srv.kill9()
    srv.start(timeout=90)
    with srv.client() as c:
        after = _wait(c, sid, timeout=120)
        jobs = c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"]
    assert ref["status"] == after["status"] == "succeeded", (ref, after)

    def ranking(s):
        return [(t["rank"], t["number"], t["status"], sorted(t["params"].items()), t["value"]) for t in s["trials"]]
    assert ranking(after) == ranking(ref)
    assert after["best_trial"] == ref["best_trial"] and after["importances"] == ref["importances"]
    assert len(jobs) == 3  # one job per trial: nothing re-run
    done_before = {t["job_id"] for t in before["trials"] if t["status"] == "complete"}
    assert done_before and all(j["attempt"] == 1 for j in jobs if j["id"] in done_before)
    assert any(j["attempt"] == 2 for j in jobs), [(j["id"], j["attempt"]) for j in jobs]


def test_trials_follow_each_other_on_the_workers_hints_not_the_poll(tmp_path):
    """With the driver's poll at 60 s, only the workers' hints (a trial ended, an epoch committed) can move the
    sweep: 6 trials on 2 workers finish well before one poll, each trial after the first two is queued only once
    an earlier one has ended, and every trial's job reports when its first minibatch began."""
    settings = Settings(data_dir=tmp_path / "data", workers=2, sweep_poll_seconds=60)
    with TestClient(create_app(settings)) as c:
        ds = _dataset(c, 120)
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "random", "seed": 1, "max_trials": 6,
                                         "parallelism": 2, "pruner": "none",
                                         "space": {"epochs": 2, "batch_size": 32, "units": [8]}}).json()["id"]
        s = _wait(c, sid, timeout=50)
        jobs = sorted(c.get("/v1/jobs", params={"sweep_id": sid}).json()["items"], key=lambda j: j["created_at"])
    assert s["status"] == "succeeded" and s["counts"] == {"complete": 6}, s
    ts = {k: [datetime.fromisoformat(j[k]) for j in jobs] for k in ("created_at", "first_batch_at", "finished_at")}
    assert all(ts["first_batch_at"][i] >= ts["created_at"][i] for i in range(6))
    for i in range(2, 6):  # never more than `parallelism` trials at once: a slot freed before each new trial
        assert sum(f <= ts["created_at"][i] for f in ts["finished_at"][:i]) >= i - 1, (i, jobs)


def test_without_a_pruner_a_trial_holds_every_epoch_value_once_it_ended(tmp_path):
    """No pruner: the driver reads a trial's metric rows once, when its job has ended (nothing judges them while
    it runs); the trial then holds every epoch's value of its job and the epoch it reached, as with a pruner."""
    from sqlalchemy import select

    from service.sweeps.tables import SweepTrial
    app = create_app(Settings(data_dir=tmp_path / "data", workers=1))
    with TestClient(app) as c:
        ds = _dataset(c, 120)
        sid = c.post("/v1/sweeps", json={"dataset_id": ds, "strategy": "random", "seed": 2, "max_trials": 2,
                                         "parallelism": 1, "pruner": "none",
                                         "space": {"epochs": 5, "batch_size": 32, "units": [8]}}).json()["id"]
        s = _wait(c, sid, timeout=60)
        assert s["status"] == "succeeded" and s["counts"] == {"complete": 2}, s
        assert [t["epoch"] for t in s["trials"]] == [5, 5]
        with app.state.sessionmaker() as session:
            rows = session.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sid)).all()
        for t in rows:
            items = c.get(f"/v1/jobs/{t.job_id}/metrics").json()["items"]
            assert t.intermediate == {str(m["epoch"]): m["val_accuracy"] for m in items} and len(items) == 5
            assert t.epoch == 5 and t.value == items[-1]["val_accuracy"]
