"""GET /metrics: Prometheus exposition parsed with prometheus_client.parser."""

from __future__ import annotations

import time

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import LiveServer, blobs, mlp_spec

PREDICT = "/v1/models/{model_id}/predict"


def scrape(client) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def test_metrics_count_requests_predictions_cache_and_jobs(client, trained_model):
    model_id = trained_model["model_id"]
    before = scrape(client)
    X = np.asarray(trained_model["X"][:7]).tolist()
    for _ in range(3):
        assert client.post(f"/v1/models/{model_id}/predict", json={"inputs": X}).status_code == 200
    assert client.post("/v1/models/0123456789abcdef0123456789abcdef/predict", json={"inputs": X}).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta("mlp_http_requests_total", route=PREDICT, method="POST", status=200) == 3
    assert delta("mlp_http_requests_total", route=PREDICT, method="POST", status=404) == 1
    assert delta("mlp_http_requests_total", route="<unmatched>", method="GET", status=404) == 1
    assert delta("mlp_http_request_duration_seconds_count", route=PREDICT, method="POST", status=200) == 3
    assert delta("mlp_http_request_duration_seconds_sum", route=PREDICT, method="POST", status=200) > 0
    assert delta("mlp_http_request_duration_seconds_bucket", route=PREDICT, method="POST", status=200,
                 le="+Inf") == 3
    assert delta("mlp_predictions_total") == 21
    assert delta("mlp_model_cache_hits_total") >= 2        # the first predict may load the model

    assert val(after, "mlp_jobs", status="succeeded") == 1
    assert val(after, "mlp_jobs", status="running") == 0
    assert val(after, "mlp_queue_depth") == 0
    assert val(after, "mlp_workers_live") == 1
    assert val(after, "mlp_training_samples_per_second") == 0     # nothing running now
    epochs = trained_model["job"]["progress"]["epoch"]
    assert val(after, "mlp_training_epoch_seconds_count") == epochs
    assert val(after, "mlp_training_epoch_seconds_bucket", le="+Inf") == epochs
    assert val(after, "mlp_training_epoch_seconds_sum") > 0


def test_metrics_show_a_running_job_and_the_queue(client, make_network, make_dataset, wait_job):
    X, y = blobs(n=3000, d=20)
    net = make_network(client, mlp_spec(3, hidden=64))
    ds = make_dataset(client, X, y)
    body = {"network_id": net["id"], "dataset_id": ds["id"], "epochs": 400, "batch_size": 8}
    first = client.post("/v1/jobs", json=body).json()
    second = client.post("/v1/jobs", json=body).json()
    wait_job(client, first["id"], timeout=30, until=("running",))
    deadline = time.monotonic() + 30
    while client.get(f"/v1/jobs/{first['id']}").json()["progress"]["epoch"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    m = scrape(client)
    assert val(m, "mlp_jobs", status="running") == 1
    assert val(m, "mlp_queue_depth") == 1
    assert val(m, "mlp_jobs", status="queued") == 1
    assert val(m, "mlp_training_samples_per_second") > 100
    for job in (first, second):
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_metrics_sum_over_api_processes_in_multiprocess_mode(tmp_path):
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    a = LiveServer(tmp_path / "data", workers=0, env=env).start()
    b = LiveServer(tmp_path / "data", workers=0, env=env).start()
    try:
        with a.client() as ca, b.client() as cb:
            for _ in range(3):
                assert ca.get("/v1/networks").status_code == 200
            for _ in range(2):
                assert cb.get("/v1/networks").status_code == 200
            for c in (ca, cb):
                m = scrape(c)
                assert val(m, "mlp_http_requests_total", route="/v1/networks", method="GET", status=200) == 5
                assert val(m, "mlp_http_request_duration_seconds_count", route="/v1/networks", method="GET",
                           status=200) == 5
    finally:
        a.stop()
        b.stop()


def test_metrics_need_a_key_when_keys_are_configured(tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    keys = tmp_path / "keys.txt"
    keys.write_text("ops:ops-key-0123456789abcdef\n")
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", workers=0, api_keys_file=str(keys)))) as c:
        r = c.get("/metrics")
        assert r.status_code == 401
        assert r.json()["detail"] == "missing API key: send the header 'Authorization: Bearer <key>'"
        r = c.get("/metrics", headers={"Authorization": "Bearer ops-key-0123456789abcdef"})
        assert r.status_code == 200
        assert "mlp_jobs" in r.text
