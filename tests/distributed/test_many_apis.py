"""Several API processes on one PostgreSQL and broker answer alike, whichever one a request reaches."""

from __future__ import annotations

from tests.distributed.conftest import job_body, setup_data, wait_job
from tests.service.helpers import sse_events


def test_two_api_processes_share_jobs_metrics_events_and_cancel(cluster, redis_url, postgres_url):
    c = cluster(database_url=postgres_url, broker_url=redis_url)
    a, b = c.api(), c.api()
    c.worker()
    with a.client() as http_a, b.client() as http_b:
        net_id, ds_id, X = setup_data(http_a, n=600)
        assert http_b.get(f"/v1/datasets/{ds_id}").status_code == 200
        job_id = http_a.post("/v1/jobs", json=job_body(net_id, ds_id, 7, epochs=4, batch_size=32)).json()["id"]

        # Live events through the other process, from a worker elsewhere.
        with http_b.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            assert r.status_code == 200
            text = r.read().decode()
        events = sse_events(text)
        events = [(e, d) for e, d in events if e != "progress"]  # within-epoch reports, about one a second
        assert [e for e, _ in events] == ["epoch"] * 4 + ["end"]
        assert events[-1][1]["status"] == "succeeded"

        ja, jb = http_a.get(f"/v1/jobs/{job_id}").json(), http_b.get(f"/v1/jobs/{job_id}").json()
        assert ja == jb
        assert http_a.get(f"/v1/jobs/{job_id}/metrics").json() == http_b.get(f"/v1/jobs/{job_id}/metrics").json()
        pa = http_a.post(f"/v1/models/{ja['model_id']}/predict", json={"inputs": X[:20].tolist()}).json()
        pb = http_b.post(f"/v1/models/{ja['model_id']}/predict", json={"inputs": X[:20].tolist()}).json()
        assert pa == pb

        # A job started on one process is cancelled through the other.
        long_id = http_a.post("/v1/jobs", json=job_body(net_id, ds_id, 8, epochs=500)).json()["id"]
        wait_job(http_b, long_id, cond=lambda j: j["status"] == "running")
        assert http_b.post(f"/v1/jobs/{long_id}/cancel").status_code in (200, 202)
        assert wait_job(http_a, long_id, timeout=30)["status"] == "cancelled"
