"""The scale-out compose layout, end to end (run by scripts/compose-scale-check.sh).

Against an API started by ``docker compose --env-file compose-scale.env up --scale worker=2``: uploads a data
set, starts 4 jobs, SIGKILLs one worker container while two jobs train, and checks that every job still
succeeds with each epoch's metrics exactly once, that one job was taken over (attempt 2), and that a model
predicts. Usage: python scripts/compose_scale_check.py URL ENGINE
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np

EPOCHS = 25


def main(url: str, engine: str) -> int:
    http = httpx.Client(base_url=url, timeout=30)
    deadline = time.time() + 120
    while True:
        try:
            ready = http.get("/readyz")
            if ready.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"not ready: {ready.text if 'ready' in locals() else 'no answer'}")
        time.sleep(1)
    print("readyz:", ready.json())
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6000, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    ds = http.post("/v1/datasets", json={"name": "compose-check", "X": X.tolist(), "y": y.tolist()}).json()
    net = http.post("/v1/networks", json={
        "layers": [{"type": "dense", "units": 32, "activation": "relu"},
                   {"type": "dense", "units": 2, "activation": "softmax"}],
        "loss": "cross_entropy"}).json()
    jobs = [http.post("/v1/jobs", json={"network_id": net["id"], "dataset_id": ds["id"], "epochs": EPOCHS,
                                        "batch_size": 4, "seed": s}).json()["id"] for s in range(4)]
    deadline = time.time() + 180
    while True:  # both workers busy, one of them past its second epoch
        states = [http.get(f"/v1/jobs/{j}").json() for j in jobs]
        running = [s for s in states if s["status"] == "running"]
        if len(running) >= 2 and any(s["progress"]["epoch"] >= 2 for s in running):
            break
        if time.time() > deadline:
            raise SystemExit(f"jobs did not start: {[s['status'] for s in states]}")
        time.sleep(0.5)
    names = subprocess.run([engine, "ps", "--format", "{{.Names}}"], capture_output=True, text=True,
                           check=True).stdout.split()
    victim = sorted(n for n in names if "worker" in n)[0]
    subprocess.run([engine, "kill", "-s", "KILL", victim], check=True, capture_output=True)
    killed_at = time.time()
    print(f"SIGKILLed {victim} while {len(running)} jobs trained")
    deadline = time.time() + 300
    while True:
        states = [http.get(f"/v1/jobs/{j}").json() for j in jobs]
        if all(s["status"] in ("succeeded", "failed", "cancelled") for s in states):
            break
        if time.time() > deadline:
            raise SystemExit(f"jobs did not finish: {[s['status'] for s in states]}")
        time.sleep(1)
    print(f"all jobs ended {time.time() - killed_at:.0f} s after the kill")
    for s in states:
        epochs = [m["epoch"] for m in http.get(f"/v1/jobs/{s['id']}/metrics").json()["items"]]
        print(f"job {s['id'][:8]}: {s['status']}, attempt {s['attempt']}, epochs 1..{EPOCHS} exactly once: "
              f"{epochs == list(range(1, EPOCHS + 1))}")
        assert s["status"] == "succeeded", s
        assert epochs == list(range(1, EPOCHS + 1)), epochs
    assert any(s["attempt"] >= 2 for s in states), "no job was taken over from the killed worker"
    pred = http.post(f"/v1/models/{states[0]['model_id']}/predict", json={"inputs": X[:5].tolist()}).json()
    assert len(pred["predictions"]) == 5, pred
    print("compose scale-out check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
