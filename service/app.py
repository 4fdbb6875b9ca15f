"""The application factory: settings, store, key ring, storage, model cache, executor, routers, error mapping."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__, compat
from service.auth import KeyRing
from service.docs import mount_docs
from service.database import create_all, make_engine, make_sessionmaker
from service.datasets.routes import router as datasets_router
from service.evaluation.routes import router as evaluation_router
from service.errors import ServiceError, capped, echo, error_key, json_body_not_sent, validation_detail
from service.executor import make_executor
from service.faults import StorageProbe, install_disk_full_handler, sweep_temporaries
from service.jobs.routes import predictions_router
from service.jobs.routes import router as jobs_router
from service.jobs.streams import StreamHub
from service.metrics import install_metrics
from service.v2.routes import router as v2_router
from service.models.routes import router as models_router
from service.models.service import ModelCache
from service.networks.routes import router as networks_router
from service.settings import Settings
from service.sweeps.driver import SweepDriver
from service.sweeps.routes import router as sweeps_router
from service.storage import make_storage
from service.ui import mount_ui

log = logging.getLogger("service")

DESCRIPTION = """Train multilayer perceptrons over HTTP: create a network, upload a data set,
start a training job, watch its metrics, and predict with the trained model."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app; tests pass their own ``Settings``. A bad MLP_API_KEYS_FILE raises KeysFileError."""
    settings = settings or Settings()
    compat.serialize_literal_eval()         # numpy's .npy headers in the thread pool (a CPython defect)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    keyring = KeyRing(settings, sessions)  # reads MLP_API_KEYS_FILE now, before anything connects or starts
    create_all(engine)
    storage = make_storage(settings)
    executor = make_executor(settings, engine, storage)
    sweep_driver = SweepDriver(sessions, executor, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sweep_temporaries(storage, settings)  # before any worker or request writes
        executor.start()
        sweep_driver.start()
        try:
            yield
        finally:
            sweep_driver.stop()
            executor.stop()
            engine.dispose()

    app = FastAPI(title="mlp-service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,   # served from vendored assets by mount_docs (works offline)
                  openapi_tags=[{"name": t} for t in ("networks", "datasets", "jobs", "sweeps", "models",
                                                      "health",
                                                      "open inference protocol v2")])
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessions
    app.state.keyring = keyring
    app.state.storage = storage
    app.state.model_cache = ModelCache(capacity=settings.model_cache_size,
                                           predict_memory_bytes=settings.predict_memory_bytes)
    app.state.executor = executor
    app.state.sweep_driver = sweep_driver
    app.state.stream_hub = StreamHub(sessions, settings)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": capped(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        path = request.url.path
        if error_key(path) == "error":      # the protocol's error body, also for unknown paths
            what = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code)
            message = (f"{what}: {request.method} {echo(path)[1:-1]} (/v2 serves server and model metadata, "
                       "health, readiness and infer)" if what else str(exc.detail))
            return JSONResponse({"error": message}, status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, which may hold NaN or a lone surrogate (a 500 when encoded)
        errors = exc.errors()
        media = json_body_not_sent(errors, request.headers.get("content-type"))
        if media is not None:
            return JSONResponse({"detail": media}, status_code=415)
        return JSONResponse({"detail": validation_detail(errors)}, status_code=422)

    install_disk_full_handler(app)
    _install_health_routes(app, engine, storage, executor)

    # Routes are matched in order, so inference (/v1/models, then /v2: the hot path, whose one-row latency is a
    # target) comes first, then the endpoints clients poll; /docs keeps the workflow order through openapi_tags.
    for router in (models_router, v2_router, jobs_router, evaluation_router, predictions_router, networks_router,
                   datasets_router, sweeps_router):
        app.include_router(router)
    mount_docs(app)
    mount_ui(app)
    install_metrics(app)
    return app


def _install_health_routes(app: FastAPI, engine, storage, executor) -> None:
    """/healthz (the process answers) and /readyz (database, storage and executor checked)."""
    storage_probe = StorageProbe(storage)

    @app.get("/healthz", tags=["health"], responses={200: {"content": {"application/json": {
        "example": {"status": "ok"}}}}})
    async def healthz() -> dict:
        """Liveness: the process answers (on the event loop: a sync route would wait for a threadpool thread and
        hand the GIL back and forth with whatever runs there, e.g. a big predict)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={
        200: {"content": {"application/json": {"example": {
            "status": "ready", "checks": {"database": "ok", "storage": "ok", "executor": "ok"}}}}},
        503: {"description": "A check failed; its entry says why.", "content": {"application/json": {"example": {
            "status": "not ready", "checks": {"database": "ok", "storage": "ok",
                                              "executor": "error: executor is not running"}}}}}})
    def readyz() -> JSONResponse:
        """Readiness: the store is reachable, the artifact directory is writable and the executor is up."""
        checks = {}
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"error: {exc}"
        checks["storage"] = storage_probe.check()  # a real write at most every 10 s, not one per request
        if not executor.healthy():
            checks["executor"] = "error: executor is not running"
        elif getattr(executor, "warming", lambda: False)():
            checks["executor"] = "starting: worker processes are warming up"
        else:
            checks["executor"] = "ok"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)
