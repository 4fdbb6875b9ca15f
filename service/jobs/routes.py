"""HTTP routes of /v1/jobs: thin wrappers over jobs.service."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.auth import still_authorised
from service.deps import MAX_INT, ExecutorDep, OwnerDep, PageDep, SessionDep, SettingsDep, StorageDep
from service.http import GuardedRoute
from service.jobs import scoring, service
from service.jobs.schemas import EpochMetrics, JobCreate, JobList, JobRead, JobStatus, MetricsList, PredictionCreate
from service.jobs.tables import TERMINAL

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=GuardedRoute)
# Batch scoring jobs live under the model that scores: POST .../predictions, GET .../predictions/{job_id}.
predictions_router = APIRouter(prefix="/v1/models", tags=["models"], route_class=GuardedRoute)

SSE_KEEPALIVE_SECONDS = 15.0


@router.post("", status_code=202, response_model=JobRead,
             responses={404: {"description": "Unknown network or data set"},
                        422: {"description": "The job does not fit the data or exceeds a limit"}})
def create_job(body: JobCreate, response: Response, session: SessionDep, owner: OwnerDep,
               settings: SettingsDep, executor: ExecutorDep, storage: StorageDep) -> JobRead:
    """Start training: the job is queued and a worker picks it up (202 with Location)."""
    job = service.create(session, executor, settings, owner=owner, body=body, storage=storage)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobRead.from_row(job)


@router.get("", response_model=JobList)
def list_jobs(session: SessionDep, owner: OwnerDep, page: PageDep, status: JobStatus | None = None,
              sweep_id: Annotated[str | None, Query(max_length=64, description="Only the trials of this sweep.")]
              = None) -> JobList:
    """List jobs, newest first, optionally only those with ``status`` or of one sweep."""
    items, total = service.list_(session, owner=owner, status=status.value if status else None,
                                 sweep_id=sweep_id, limit=page.limit, offset=page.offset)
    return JobList(items=[JobRead.from_row(j) for j in items], total=total)


@router.get("/{job_id}", response_model=JobRead, responses={404: {"description": "Unknown job"}})
async def get_job(job_id: str, request: Request, owner: OwnerDep) -> Response:
    """Status, progress, latest metrics, best epoch, model id and error of a job."""
    # The endpoint clients poll, so it is lean: a Core read, and the JSON written once by the schema itself
    # instead of being validated again on the way out. With SQLite (WAL: a reader never waits for a writer)
    # the primary-key read takes ~0.1 ms, less than a threadpool round trip, so it runs right here; with a
    # networked database it goes to the threadpool, so the event loop never waits on the network.
    def read() -> str:
        with request.app.state.engine.connect() as conn:
            return JobRead.from_row(service.read_row(conn, owner=owner, job_id=job_id)).model_dump_json()

    inline = request.app.state.engine.dialect.name == "sqlite"
    return Response(read() if inline else await run_in_threadpool(read), media_type="application/json")


@router.get("/{job_id}/metrics", response_model=MetricsList, responses={404: {"description": "Unknown job"}})
def get_metrics(job_id: str, session: SessionDep, owner: OwnerDep,
                since_epoch: Annotated[int, Query(ge=0, le=MAX_INT, description="Only epochs after this one.")] = 0
                ) -> MetricsList:
    """Per-epoch metrics; pass the last epoch you saw as ``since_epoch`` to poll incrementally."""
    rows = service.list_metrics(session, owner=owner, job_id=job_id, since_epoch=since_epoch)
    return MetricsList(items=[EpochMetrics(**m) for m in rows], total=len(rows))


@router.post("/{job_id}/cancel", response_model=JobRead,
             responses={404: {"description": "Unknown job"}, 409: {"description": "The job already ended"}})
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep, executor: ExecutorDep) -> JobRead:
    """Cancel a queued job, or stop a running one within one minibatch."""
    return JobRead.from_row(service.cancel(session, executor, owner=owner, job_id=job_id))


@router.delete("/{job_id}", status_code=204,
               responses={404: {"description": "Unknown job"},
                          409: {"description": "The job is queued or running (cancel it first)"}})
def delete_job(job_id: str, request: Request, session: SessionDep, owner: OwnerDep, storage: StorageDep,
               delete_model: Annotated[bool, Query(description="Also delete the job's trained model.")] = False
               ) -> Response:
    """Delete a finished job with its metrics and checkpoints; its model stays unless ``delete_model=true``."""
    service.delete(session, storage, owner=owner, job_id=job_id, delete_model=delete_model,
                   model_cache=request.app.state.model_cache)
    return Response(status_code=204)


SSE_EXAMPLE = ('event: progress\ndata: {"epoch":1,"batch":12,"batches":25,"fraction":0.048,"eta_seconds":19.5}\n\n'
               'id: 1\nevent: epoch\ndata: {"epoch":1,"train_loss":0.71,"val_loss":0.69,"seconds":0.02}\n\n'
               'event: end\ndata: {"id":"7b8b965ad4bca0e41ab51de7b31363a1","status":"succeeded","model_id":"5d41..."}\n\n')


def _sse(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"example": SSE_EXAMPLE}},
                             "description": "`progress` events (about 1/s) and one `epoch` event per epoch, "
                                            "then `end`."},
                       404: {"description": "Unknown job"}})
async def job_events(job_id: str, request: Request, owner: OwnerDep,
                     since_epoch: Annotated[int, Query(ge=0, le=MAX_INT)] = 0) -> StreamingResponse:
    """Server-sent events: `progress` within an epoch (epoch in progress, batch, batches, fraction, eta_seconds),
    an `epoch` event (data: the epoch's metrics) per epoch, an `end` event with the final job when it ends, then
    the stream closes. Reconnect with `Last-Event-ID` or `since_epoch`."""
    last_id = request.headers.get("last-event-id")
    if last_id and last_id.isascii() and last_id.isdigit():
        since_epoch = max(since_epoch, min(int(last_id), MAX_INT))
    hub = request.app.state.stream_hub
    feed = await hub.open(owner, job_id)  # 404 before the stream starts; 429 over the stream caps
    recheck = max(float(request.app.state.settings.api_key_recheck_seconds), 0.05)

    async def stream() -> AsyncIterator[bytes]:
        after = since_epoch
        last_sent = last_check = time.monotonic()
        last_progress = None
        try:
            while True:
                changed = feed.changed
                for m in feed.metrics:
                    if int(m["epoch"]) > after:
                        after = int(m["epoch"])
                        yield _sse("epoch", m, after)
                        last_sent = time.monotonic()
                p = feed.job.progress if feed.job is not None else None
                if p is not None and p.batch is not None and feed.job.status.value not in TERMINAL \
                        and (p.epoch, p.batch) != last_progress:
                    last_progress = (p.epoch, p.batch)
                    yield _sse("progress", {"epoch": p.epoch + 1, "batch": p.batch, "batches": p.batches,
                                            "fraction": p.fraction, "eta_seconds": p.eta_seconds})
                    last_sent = time.monotonic()
                if feed.job is not None and feed.job.status.value in TERMINAL:
                    yield _sse("end", feed.job.model_dump(mode="json"))
                    return
                if feed.gone:
                    yield _sse("error", {"detail": f"job {job_id} not found"})
                    return
                if time.monotonic() - last_sent > SSE_KEEPALIVE_SECONDS:
                    yield b": keep-alive\n\n"
                    last_sent = time.monotonic()
                # with keys, wake to re-check the key; without, only for news or the keep-alive
                keyed = request.app.state.keyring.known_enabled()
                with anyio.move_on_after(min(recheck, SSE_KEEPALIVE_SECONDS) if keyed else SSE_KEEPALIVE_SECONDS):
                    await changed.wait()
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_check >= recheck:  # a revoked key ends its streams
                    last_check = time.monotonic()
                    if not await still_authorised(request, owner):
                        yield _sse("error", {"detail": "the API key was revoked"})
                        return
        finally:
            hub.close(feed)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@predictions_router.post("/{model_id}/predictions", status_code=202, response_model=JobRead,
                         responses={404: {"description": "Unknown model or data set"},
                                    422: {"description": "The data set lacks a column of the model's input_schema, "
                                                         "or holds it with another type (the detail names it)"}})
def create_predictions(model_id: str, body: PredictionCreate, request: Request, response: Response,
                       session: SessionDep, owner: OwnerDep, settings: SettingsDep, executor: ExecutorDep,
                       storage: StorageDep) -> JobRead:
    """Score a stored data set with the model as a job (kind `predict`): 202 with Location of the job."""
    job = scoring.create(session, executor, storage, settings, owner=owner, model_id=model_id, body=body,
                         cache=request.app.state.model_cache)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobRead.from_row(job)


_FILE = {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"},
                                  "example": "prediction,proba_no,proba_yes\nyes,0.12,0.88\nno,0.97,0.03\n"},
                     "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"},
                                                        "example": "(a Parquet file with the same columns)"}},
         "description": "The predictions file: `prediction` (labels as uploaded, or values), and `proba_<label>` "
                        "per class for classification; one row per data set row, in order."}


@predictions_router.get("/{model_id}/predictions/{job_id}", response_class=StreamingResponse,
                        responses={200: _FILE, 404: {"description": "Unknown model or job, or a job that is not a "
                                                                    "batch prediction of this model"},
                                   409: {"description": "The job has not succeeded (queued, running, failed or "
                                                        "cancelled)"}})
def download_predictions(model_id: str, job_id: str, session: SessionDep, owner: OwnerDep,
                         storage: StorageDep) -> StreamingResponse:
    """Download the predictions file of a succeeded scoring job (CSV or Parquet, as asked for)."""
    key, media = scoring.predictions_file(session, storage, owner=owner, model_id=model_id, job_id=job_id)
    fh = storage.open_read(key)

    def chunks():
        with fh:
            while block := fh.read(1 << 20):
                yield block

    name = key.rsplit("/", 1)[-1].replace("predictions", f"predictions-{job_id}")
    return StreamingResponse(chunks(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
