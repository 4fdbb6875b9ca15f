"""A sweep's training options: ``training`` fixes job options for every trial (the jobs' own fields and checks),
and the space searches ``l1`` and ``clip_norm`` beside the other training dimensions (issue 17: "any new training
options")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.sweeps import search
from service.sweeps.schemas import SweepCreate
from tests.service.test_sweeps import _dataset, _wait

TRAINING = {"class_weight": "balanced", "lr_schedule": {"type": "cosine"}, "output_bias": "zeros",
            "preprocessing": {"numeric": {"impute": "median", "scale": "minmax"}}}


def test_trials_train_with_the_fixed_options_and_the_searched_ones(tmp_path):
    """No workers: the queued trial jobs carry the sweep's training options and their own l1 / clip_norm."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        ds = _dataset(c, 60)
        body = {"dataset_id": ds, "strategy": "random", "seed": 1, "max_trials": 4, "parallelism": 4,
                "training": TRAINING,
                "space": {"epochs": 2, "clip_norm": [0.5, 2.0], "l1": {"low": 1e-5, "high": 1e-3, "log": True}}}
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        s = _wait(c, r.json()["id"], timeout=20, until=lambda s: s["counts"].get("running", 0) == 4)
        for t in s["trials"]:
            job = c.get(f"/v1/jobs/{t['job_id']}").json()
            params = job["params"]
            assert params["clip_norm"] == t["params"]["clip_norm"] in (0.5, 2.0)
            assert params["l1"] == pytest.approx(t["params"]["l1"]) and 1e-5 <= params["l1"] <= 1e-3
            assert params["class_weight"] == "balanced" and params["lr_schedule"]["type"] == "cosine"
            assert params["output_bias"] == "zeros"
            assert params["preprocessing"]["numeric"]["impute"] == "median"
            assert params["preprocessing"]["numeric"]["scale"] == "minmax"
        assert {t["params"]["clip_norm"] for t in s["trials"]} == {0.5, 2.0}


def test_training_options_are_checked_at_creation(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        ds = _dataset(c, 60)
        base = {"dataset_id": ds, "max_trials": 2, "space": {"epochs": 2}}
        r = c.post("/v1/sweeps", json={**base, "training": {"epochs": 3}})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "training"]
        assert r.json()["detail"][0]["msg"] == ("epochs is set in space.epochs (a fixed value or the "
                                                "values to search), not in training")
        r = c.post("/v1/sweeps", json={**base, "training": {"lr_schedule": {"type": "warp"}}})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "training", "lr_schedule"]
        for training, detail in (
                ({"class_weight": {"7": 2.0, "cat": 1.0}}, "training.class_weight: "),
                ({"sample_weight_column": "nope"}, "training.sample_weight_column: "),
                ({"early_stopping": {"monitor": "val_r2"}}, "training.early_stopping.monitor: 'val_r2' is not "
                                                            "available for classification")):
            r = c.post("/v1/sweeps", json={**base, "training": training})
            assert r.status_code == 422 and r.json()["detail"].startswith(detail), r.text
        r = c.post("/v1/sweeps", json={**base, "space": {"epochs": 2, "clip_norm": [0.0, 1.0]}})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("space.clip_norm: 0.0 fails every trial that draws it (clip_norm")
        r = c.post("/v1/sweeps", json={**base, "space": {"epochs": 2, "l1": -1.0}})
        assert r.status_code == 422 and [(e["loc"], e["msg"]) for e in r.json()["detail"]] == [
            (["body", "space", "l1", "value"], "Input should be greater than or equal to 0")]  # the schema's bound


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_new_dimensions_left_at_their_defaults_propose_what_they_did(monkeypatch, strategy):
    """l1 and clip_norm come last and fixed by default: a seed proposes the other dimensions as it did before they
    existed (sweeps created before keep their trials and ranking after an upgrade)."""
    req = SweepCreate(dataset_id="d", strategy=strategy, seed=7, max_trials=3,
                      space={"units": {"low": 8, "high": 64}, "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
                             "hidden_layers": {"low": 1, "high": 3}})

    def proposals() -> list[dict]:
        rows = []
        for number in range(12):
            params = search.propose(req, "s", rows, number=number)
            rows.append(SimpleNamespace(number=number, params=params, status="complete",
                                        value=params["learning_rate"], intermediate={}))
        return [r.params for r in rows]

    now = proposals()
    assert all(p["l1"] == 0.0 and p["clip_norm"] is None for p in now)
    monkeypatch.setattr(search, "DIMENSIONS", search.DIMENSIONS[:-2])      # as before l1 and clip_norm
    before = proposals()
    assert [{k: v for k, v in p.items() if k not in ("l1", "clip_norm")} for p in now] == before


def test_importances_from_the_second_complete_trial_and_after_a_cancel(tmp_path):
    """The README: importances from 2 complete trials on. They were held back until the sweep ended (the refit
    clock started at the first trial, when there was nothing to fit) and stayed null after a cancel."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 200)
        body = {"dataset_id": ds, "strategy": "random", "seed": 2, "max_trials": 40, "parallelism": 1,
                "pruner": "none", "space": {"epochs": 3, "units": {"low": 8, "high": 32},
                                            "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}}
        sid = c.post("/v1/sweeps", json=body).json()["id"]
        s = _wait(c, sid, timeout=60, until=lambda s: s["counts"].get("complete", 0) >= 2 and s["importances"])
        assert s["status"] == "running" and set(s["importances"]) <= {"units_1", "learning_rate", "hidden_layers",
                                                                      "units_2"}
        assert c.post(f"/v1/sweeps/{sid}/cancel").status_code == 200
        s = c.get(f"/v1/sweeps/{sid}").json()
        assert s["status"] == "cancelled" and s["importances"] and s["best_model_id"] is not None


def test_clip_norm_searched_between_no_clipping_and_a_value(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0))) as c:
        ds = _dataset(c, 60)
        body = {"dataset_id": ds, "strategy": "random", "seed": 0, "max_trials": 8, "parallelism": 8,
                "space": {"epochs": 2, "clip_norm": [None, 1.0]}}
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        s = _wait(c, r.json()["id"], timeout=20, until=lambda s: s["counts"].get("running", 0) == 8)
        drawn = [t["params"]["clip_norm"] for t in s["trials"]]
        assert set(drawn) == {None, 1.0}, drawn
        for t in s["trials"]:
            assert c.get(f"/v1/jobs/{t['job_id']}").json()["params"]["clip_norm"] == t["params"]["clip_norm"]
        r = c.post("/v1/sweeps", json={**body, "space": {"epochs": 2, "clip_norm": [None, 0.0]}})
        assert r.status_code == 422 and r.json()["detail"].startswith("space.clip_norm: 0.0 fails every trial")


def test_a_trials_value_is_its_models_with_early_stopping(tmp_path):
    """With training.early_stopping (restore_best), a trial's value and rank are those of the weights its model
    serves (the kept epoch's), not of its last epoch."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=1))) as c:
        ds = _dataset(c, 300)
        body = {"dataset_id": ds, "strategy": "random", "seed": 4, "max_trials": 4, "parallelism": 1,
                "pruner": "none", "metric": "val_accuracy",
                "training": {"early_stopping": {"monitor": "val_loss", "patience": 2}},
                "space": {"epochs": 12, "learning_rate": {"low": 0.05, "high": 0.3, "log": True}}}
        r = c.post("/v1/sweeps", json=body)
        assert r.status_code == 202, r.text
        s = _wait(c, r.json()["id"], timeout=90)
        complete = [t for t in s["trials"] if t["status"] == "complete"]
        assert complete, s
        for t in complete:
            model = c.get(f"/v1/models/{t['model_id']}").json()
            assert t["value"] == model["metrics"]["val_accuracy"], (t, model["metrics"])
        best = max(complete, key=lambda t: t["value"])
        assert s["best_model_id"] == best["model_id"]
