"""20 clients at once for 30 s against a real ``mlp-service serve``: zero 5xx, nothing lost or duplicated.

Two tenants (keys made with the real ``mlp-service keys create``), ten clients each. Every client loops:
create a network, upload a small data set, start a job, poll it, predict with its model. Afterwards each
tenant's lists hold exactly what its clients created (no more, no less, no duplicates), every succeeded job
has its model, and nothing of one tenant shows up for the other.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter

import httpx

from tests.service.helpers import ROOT, blobs, mlp_spec, serve_command

CLIENTS = 20
SECONDS = float(os.environ.get("MLP_CONCURRENCY_SECONDS", "30"))
TERMINAL = ("succeeded", "failed", "cancelled")
JOB_WAIT_SECONDS = 180.0  # how long a client waits for its job (past the 30 s too): 20 jobs queue for 2 workers


def _make_key(data_dir, tenant: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLP_")}
    env.update({"MLP_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)})
    out = subprocess.run(serve_command() + ["keys", "create", "--tenant", tenant], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


class Worker(threading.Thread):
    """One client: records what it created and every status code it saw."""

    def __init__(self, url: str, key: str, seed: int, stop_at: float):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=60.0, headers={"Authorization": f"Bearer {key}"})
        self.seed, self.stop_at = seed, stop_at
        self.created: dict[str, list[str]] = {"networks": [], "datasets": [], "jobs": []}
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.predictions = 0

    def call(self, method: str, path: str, expect: tuple[int, ...], **kw) -> httpx.Response | None:
        r = self.http.request(method, path, **kw)
        self.statuses[r.status_code] += 1
        if r.status_code not in expect:
            self.errors.append(f"{method} {path} -> {r.status_code} {r.text[:300]}")
            return None
        return r

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"client {self.seed}: {type(exc).__name__}: {exc}")
        finally:
            self.http.close()

    def _loop(self) -> None:
        i = 0
        while time.monotonic() < self.stop_at:
            i += 1
            X, y = blobs(n=48, d=3, k=2, seed=self.seed * 1000 + i)
            r = self.call("POST", "/v1/networks", (201,), json=mlp_spec(2, hidden=8))
            if r is None:
                continue
            net = r.json()["id"]
            self.created["networks"].append(net)
            r = self.call("POST", "/v1/datasets", (201,), json={"name": f"c{self.seed}-{i}", "X": X.tolist(),
                                                                 "y": y.tolist()})
            if r is None:
                continue
            ds = r.json()["id"]
            self.created["datasets"].append(ds)
            r = self.call("POST", "/v1/jobs", (202,), json={"network_id": net, "dataset_id": ds, "epochs": 2,
                                                            "batch_size": 16, "seed": i})
            if r is None:
                continue
            job = r.json()["id"]
            self.created["jobs"].append(job)
            deadline = time.monotonic() + JOB_WAIT_SECONDS
            body = r.json()
            while body["status"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.1)
                r = self.call("GET", f"/v1/jobs/{job}", (200,))
                if r is None:
                    break
                body = r.json()
            self.call("GET", "/v1/jobs", (200,), params={"limit": 5})
            if body.get("status") == "succeeded":
                r = self.call("POST", f"/v1/models/{body['model_id']}/predict", (200,),
                              json={"inputs": X[:4].tolist()})
                if r is not None and len(r.json()["predictions"]) == 4:
                    self.predictions += 1


def _all(http: httpx.Client, path: str) -> list[dict]:
    items, offset = [], 0
    while True:
        page = http.get(path, params={"limit": 1000, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        offset += len(body["items"])
        if offset >= body["total"] or not body["items"]:
            assert len(items) == body["total"]
            return items


def test_twenty_clients_for_thirty_seconds(live_server, tmp_path):
    data_dir = tmp_path / "data"
    keys = {"alice": _make_key(data_dir, "alice"), "bob": _make_key(data_dir, "bob")}
    server = live_server(workers=2)
    stop_at = time.monotonic() + SECONDS
    workers = [Worker(server.url, keys["alice" if n % 2 == 0 else "bob"], n, stop_at) for n in range(CLIENTS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=SECONDS + JOB_WAIT_SECONDS + 120)
    assert not any(w.is_alive() for w in workers), "a client hung"

    statuses = sum((w.statuses for w in workers), Counter())
    errors = [e for w in workers for e in w.errors]
    assert not [s for s in statuses if s >= 500], (statuses, errors[:10])
    assert not errors, errors[:10]
    assert statuses[201] >= CLIENTS * 2, statuses   # every client got through at least one round

    for tenant, key in keys.items():
        mine = [w for n, w in enumerate(workers) if (n % 2 == 0) == (tenant == "alice")]
        with httpx.Client(base_url=server.url, timeout=60.0, headers={"Authorization": f"Bearer {key}"}) as http:
            # let the queue drain, so every job has its final state and model
            deadline = time.monotonic() + 120
            while http.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()["total"] or \
                    http.get("/v1/jobs", params={"status": "running", "limit": 1}).json()["total"]:
                assert time.monotonic() < deadline, "jobs did not drain"
                time.sleep(0.2)
            for kind in ("networks", "datasets", "jobs"):
                created = [i for w in mine for i in w.created[kind]]
                listed = [item["id"] for item in _all(http, f"/v1/{kind}")]
                assert len(set(created)) == len(created), f"{tenant}: duplicate {kind} ids handed out"
                assert len(set(listed)) == len(listed), f"{tenant}: duplicate {kind} in the list"
                assert set(listed) == set(created), (tenant, kind, len(listed), len(created))
            jobs = _all(http, "/v1/jobs")
            models = _all(http, "/v1/models")
            succeeded = [j for j in jobs if j["status"] == "succeeded"]
            assert all(j["status"] == "succeeded" for j in jobs), Counter(j["status"] for j in jobs)
            assert sorted(m["id"] for m in models) == sorted(j["model_id"] for j in succeeded)
            assert sorted(m["job_id"] for m in models) == sorted(j["id"] for j in succeeded)
    assert sum(w.predictions for w in workers) >= CLIENTS
    print(f"\n{CLIENTS} clients, {SECONDS:.0f} s: {sum(statuses.values())} requests {dict(statuses)}, "
          f"{sum(len(w.created['jobs']) for w in workers)} jobs, {sum(w.predictions for w in workers)} predictions")
