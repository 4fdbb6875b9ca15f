"""Progress people can trust: the fraction moves within an epoch and the ETA tracks the true time left."""

from __future__ import annotations

import json
import threading
import time

import numpy as np

from service.executor.worker import PROGRESS_SECONDS, Eta
from tests.service.helpers import mlp_spec


def _simulate(epochs: int = 20, batches: int = 750, seed: int = 0):
    """A steady job on a simulated clock: noisy minibatch times, a validation pass after each epoch, and a
    progress report at most every PROGRESS_SECONDS, as the worker makes them. Yields (time, fraction, eta,
    the last epoch's seconds) per report, then the end time."""
    rng = np.random.default_rng(seed)
    now, next_report, eta, epoch_seconds, reports = 0.0, 0.0, Eta(), None, []
    for epoch in range(1, epochs + 1):
        start = now
        for done in range(batches):
            if now >= next_report:
                next_report = now + PROGRESS_SECONDS
                fraction = (epoch - 1 + done / batches) / epochs
                reports.append((now, fraction, eta.update(now, fraction), epoch_seconds, epoch))
            now += 0.0013 * rng.lognormal(0.0, 0.3)  # one minibatch
        now += 0.05 * rng.lognormal(0.0, 0.3)  # the validation pass
        epoch_seconds = now - start
    return reports, now


def test_eta_of_a_steady_job_stays_within_25_percent_after_the_first_20():
    reports, end = _simulate()
    checked = [(f, eta, end - t) for t, f, eta, _, _ in reports if f >= 0.2]
    assert len(checked) >= 15
    for f, eta, left in checked:
        assert abs(eta - left) <= 0.25 * left, (f, eta, left)
    # the estimate it replaces (the last epoch's seconds times the epochs left) does not hold this: within an
    # epoch it stands still, up to one epoch off
    old = [(f, seconds * (20 - (epoch - 1)), end - t) for t, f, _, seconds, epoch in reports if f >= 0.2]
    assert any(abs(e - left) > 0.25 * left for f, e, left in old), old


def test_eta_follows_a_lasting_change_of_speed():
    eta = Eta()
    for i in range(11):  # 1 % per second for 10 s: 90 s left
        value = eta.update(float(i), i / 100)
    assert value == 90.0
    for i in range(1, 21):  # then half as fast (another job started) for 20 s
        value = eta.update(10.0 + i, 0.1 + i / 200)
    assert abs(value - 0.8 / 0.005) <= 0.05 * 160, value


def _steady_job(client, make_network, make_dataset) -> str:
    """A job of 5 epochs of 10,000 minibatches each: epochs several times longer than the ~1 s between progress
    reports even on a fast idle machine (steady work, nothing else running)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 20)).round(3)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    net = make_network(client, mlp_spec(3, hidden=64, input_dim=20))
    ds = make_dataset(client, X, y, name="steady")
    r = client.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": 5,
                                      "batch_size": 4, "optimizer": {"type": "adam", "learning_rate": 0.001}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _events(client, job_id: str, out: list) -> None:
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))


def test_fraction_moves_within_epochs_and_eta_tracks_the_time_left(client, make_network, make_dataset):
    job_id = _steady_job(client, make_network, make_dataset)
    events: list = []
    reader = threading.Thread(target=_events, args=(client, job_id, events), daemon=True)
    reader.start()
    samples = []  # (time, status, progress)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        samples.append((time.monotonic(), job["status"], job["progress"]))
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    end = samples[-1][0]
    assert samples[-1][1] == "succeeded", samples[-1]
    reader.join(10)

    running = [(t, p) for t, s, p in samples if s == "running" and p.get("batch") is not None]
    # within an epoch (the same completed-epoch count) the fraction takes several increasing values
    per_epoch: dict[int, list[float]] = {}
    for _, p in running:
        assert 0 <= p["batch"] < p["batches"] == 10000, p
        per_epoch.setdefault(p["epoch"], []).append(p["fraction"])
    assert any(len(set(f)) >= 2 for f in per_epoch.values()), per_epoch
    fractions = [p["fraction"] for _, p in running]
    assert fractions == sorted(fractions) and fractions[-1] > 0.8, fractions

    # the ETA counts down with the time (corrected for the time since the report). The 25 % bound of a steady
    # job is the simulated test above; here, on a shared machine whose speed can change twofold within seconds,
    # the live value is held to a factor of 3 of the time that truly remained
    checked = [(p["fraction"], p["eta_seconds"], end - t) for t, p in running if p["fraction"] >= 0.2]
    assert len(checked) >= 10, checked
    assert checked[0][1] > checked[-1][1] >= 0, checked
    for fraction, eta, true_left in checked:
        if true_left > 2.0:
            assert true_left / 3 <= eta <= 3 * true_left, (fraction, eta, true_left, checked)

    # the event stream carries the same progress between the epoch events, then ends
    names = [n for n, _ in events]
    assert names[-1] == "end" and names.count("epoch") == 5, names
    progress = [d for n, d in events if n == "progress"]
    assert len(progress) >= 3, names
    assert all(1 <= d["epoch"] <= 5 and 0 <= d["batch"] < d["batches"] == 10000 for d in progress), progress
    assert [d["fraction"] for d in progress] == sorted(d["fraction"] for d in progress)
    first_epoch = names.index("epoch")
    assert "progress" in names[:first_epoch], names  # reported before the first epoch ended
