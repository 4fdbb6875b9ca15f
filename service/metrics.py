"""Prometheus metrics: ``GET /metrics`` in the text exposition format (prometheus-client).

Two sources, one answer:

- In-process counters and histograms of the API process(es): requests and their latency by route template,
  method and status; predicted rows; model-cache hits and misses. With several API processes, set
  ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by them (before they start): each process
  writes its values there and every scrape sums them (prometheus-client's multiprocess mode).
- The database, read at scrape time: jobs by status, queue depth, workers with a running job, training
  samples/s of the running jobs and the histogram of epoch seconds. Workers (embedded or Celery, on any
  machine) write job and epoch rows anyway, so they report through the database and need no endpoint of
  their own; every API process answers the same values. In embedded mode ``mlp_workers_live`` counts this
  process's live worker processes; in Celery mode, the distinct workers holding a running job.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest,
                               multiprocess, values)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import case, func, select

from service.deps import OwnerDep

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EPOCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

REQUESTS = Counter("mlp_http_requests", "HTTP requests answered, by route template, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("mlp_http_request_duration_seconds", "Time to answer an HTTP request (to the last byte).",
                    ["route", "method", "status"], buckets=LATENCY_BUCKETS)
PREDICTED_ROWS = Counter("mlp_predictions", "Rows predicted (every predict, invocations and /v2 infer).")
CACHE_HITS = Counter("mlp_model_cache_hits", "Model look-ups answered from this process's model cache.")
CACHE_MISSES = Counter("mlp_model_cache_misses", "Model look-ups that had to load the model from storage.")


class MetricsMiddleware:
    """Pure ASGI middleware: counts each HTTP request and times it, labelled by the matched route template."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def _send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            labels = (template, scope.get("method", ""), str(status[0]))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - start)


class DatabaseCollector:
    """Gauges and the epoch-seconds histogram computed from the job rows at scrape time."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self):
        from service.datasets.tables import Dataset
        from service.jobs.tables import Job, JobMetric

        Session = self.app.state.sessionmaker
        with Session() as session:
            counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            running = session.execute(
                select(Job.id, Job.worker, Job.params, Job.validation_dataset_id, Job.metrics, Dataset.n_samples)
                .join(Dataset, Dataset.id == Job.dataset_id, isouter=True).where(Job.status == "running")).all()
            seconds = JobMetric.metrics["seconds"].as_float()
            le_cols = [func.sum(case((seconds <= b, 1), else_=0)) for b in EPOCH_BUCKETS]
            hist = session.execute(select(func.count(seconds), func.coalesce(func.sum(seconds), 0.0), *le_cols)
                                   .where(seconds.is_not(None))).one()

        jobs = GaugeMetricFamily("mlp_jobs", "Jobs by status (all tenants).", labels=["status"])
        for st in JOB_STATUSES:
            jobs.add_metric([st], counts.get(st, 0))
        yield jobs
        yield GaugeMetricFamily("mlp_queue_depth", "Jobs waiting for a worker.", value=counts.get("queued", 0))

        pids = self.app.state.executor.worker_pids()
        live = len(pids) if pids is not None else len({r.worker for r in running if r.worker})
        yield GaugeMetricFamily("mlp_workers_live", "Live worker processes (embedded), or workers holding a "
                                                    "running job (Celery).", value=live)

        rate = 0.0
        for r in running:
            m = r.metrics or {}
            sec = m.get("seconds")
            if not sec or not r.n_samples:
                continue
            split = 0.0 if r.validation_dataset_id else float((r.params or {}).get("validation_split") or 0.0)
            n_train = r.n_samples - (max(1, int(round(r.n_samples * split))) if split else 0)
            rate += n_train / float(sec)
        yield GaugeMetricFamily("mlp_training_samples_per_second", "Training rows per second, summed over the "
                                "running jobs (their latest epoch).", value=rate)

        count, total, *cum = hist
        buckets = [(repr(b), int(c or 0)) for b, c in zip(EPOCH_BUCKETS, cum)] + [("+Inf", int(count or 0))]
        yield HistogramMetricFamily("mlp_training_epoch_seconds", "Seconds per training epoch (every epoch "
                                    "recorded in the database).", buckets=buckets, sum_value=float(total or 0.0))


def _process_metrics() -> bytes:
    """This process's metrics; in prometheus-client's multiprocess mode those of every API process.

    The library chooses the mode itself when it loads (``PROMETHEUS_MULTIPROC_DIR`` set: values go to files there);
    asking it, rather than reading the variable here, keeps the two from disagreeing.
    """
    if values.ValueClass is values.MutexValue:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # reads the directory from the library's own variable
    return generate_latest(registry)


def install_metrics(app: FastAPI) -> None:
    """Add the request-metrics middleware and ``GET /metrics``."""
    app.add_middleware(MetricsMiddleware)
    db_registry = CollectorRegistry(auto_describe=False)
    db_registry.register(DatabaseCollector(app))

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example": (
                 '# TYPE mlp_http_requests_total counter\n'
                 'mlp_http_requests_total{method="POST",route="/v1/models/{model_id}/predict",status="200"} 42.0\n'
                 '# TYPE mlp_jobs gauge\nmlp_jobs{status="running"} 1.0\n')}},
                 "description": "Prometheus text exposition format."}})
    def metrics(request: Request, owner: OwnerDep) -> Response:
        """Prometheus metrics of the API processes and, from the database, of jobs and workers (all tenants)."""
        return Response(_process_metrics() + generate_latest(db_registry), media_type=CONTENT_TYPE_LATEST)
