"""Fair claiming under Celery: a task trains the fairest queued job across tenants (``jobs.claim_fairest``), not
the job its message named, so one tenant's queue does not starve another's. Tenant A queues three jobs, then B
one; one worker process then starts them A1, B, A2, A3 (publish order would be A1, A2, A3, B)."""

from __future__ import annotations

import subprocess

from tests.distributed.conftest import ROOT, job_body, service_command, setup_data, wait_job


def _key(c, tenant: str) -> str:
    out = subprocess.run(service_command() + ["keys", "create", "--tenant", tenant], capture_output=True,
                         text=True, env=c.env, cwd=str(ROOT), timeout=60, check=True)
    return out.stdout.strip()


def test_celery_tasks_claim_the_fairest_queued_job_across_tenants(cluster, redis_url):
    c = cluster(database_url=None, broker_url=redis_url)
    keys = {"A": _key(c, "ann"), "B": _key(c, "bob")}
    api = c.api()
    clients = {t: api.client() for t in keys}
    try:
        for t, http in clients.items():
            http.headers["Authorization"] = f"Bearer {keys[t]}"
        jobs = []
        for tenant, n in (("A", 3), ("B", 1)):
            http = clients[tenant]
            net_id, ds_id, _ = setup_data(http, n=300)
            for i in range(n):
                r = http.post("/v1/jobs", json=job_body(net_id, ds_id, i, epochs=1, batch_size=32))
                assert r.status_code == 202, r.text
                jobs.append((f"{tenant}{i + 1}" if tenant == "A" else "B", tenant, r.json()["id"]))
        c.worker(concurrency=1)          # every message is in the broker before the one pool process starts
        done = [(name, wait_job(clients[tenant], job_id, timeout=120)) for name, tenant, job_id in jobs]
    finally:
        for http in clients.values():
            http.close()
    assert all(job["status"] == "succeeded" for _, job in done), done
    order = [name for name, job in sorted(done, key=lambda d: d[1]["started_at"])]
    assert order == ["A1", "B", "A2", "A3"], (order, c.logs())
