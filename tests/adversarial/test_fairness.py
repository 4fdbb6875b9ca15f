"""Fair claiming across tenants: a tenant's queued jobs do not starve another tenant's job (one embedded worker)."""

from __future__ import annotations

import os
import subprocess
import time

from tests.service.helpers import ROOT, serve_command
from tests.service.test_durability import _job_body, _setup, _wait


def _key(srv, tenant: str) -> str:
    env = dict(os.environ, MLP_DATA_DIR=str(srv.data_dir), PYTHONPATH=str(ROOT))
    out = subprocess.run(serve_command() + ["keys", "create", "--tenant", tenant], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    return out.stdout.strip()


def _client(srv, key: str):
    http = srv.client()
    http.headers["Authorization"] = f"Bearer {key}"
    deadline = time.monotonic() + 10
    while http.get("/v1/jobs").status_code != 200:     # the server picks up the new key
        assert time.monotonic() < deadline, "key never accepted"
        time.sleep(0.1)
    return http


def test_a_later_tenant_is_not_starved_by_another_tenants_queue(live_server):
    srv = live_server(workers=1)
    a, b = _client(srv, _key(srv, "ann")), _client(srv, _key(srv, "bob"))
    a_net, a_ds, _ = _setup(a, n=600)
    b_net, b_ds, _ = _setup(b, n=600)
    a_jobs = []
    for _ in range(3):
        r = a.post("/v1/jobs", json=_job_body(a_net, a_ds, epochs=3))
        assert r.status_code == 202, r.text
        a_jobs.append(r.json()["id"])
    r = b.post("/v1/jobs", json=_job_body(b_net, b_ds, epochs=1))
    assert r.status_code == 202, r.text
    b_job = r.json()["id"]
    assert all(a.get(f"/v1/jobs/{j}").json()["created_at"] <= b.get(f"/v1/jobs/{b_job}").json()["created_at"]
               for j in a_jobs)                                     # B queued after all of A's
    done_b = _wait(b, b_job, timeout=60)
    done_a = [_wait(a, j, timeout=60) for j in a_jobs]
    assert done_b["status"] == "succeeded" and all(j["status"] == "succeeded" for j in done_a), (done_b, done_a)
    order = sorted([(j["started_at"], "A" + str(i + 1)) for i, j in enumerate(done_a)]
                   + [(done_b["started_at"], "B")])
    names = [n for _, n in order]
    assert names.index("B") < names.index("A3"), order
    assert names == ["A1", "B", "A2", "A3"], order                 # round-robin: B right after A's first
