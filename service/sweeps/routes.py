"""HTTP routes of /v1/sweeps: thin wrappers over sweeps.service."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Literal

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.auth import still_authorised
from service.deps import ExecutorDep, OwnerDep, PageDep, SessionDep, SettingsDep, StorageDep
from service.http import GuardedRoute
from service.sweeps import service
from service.sweeps.schemas import SweepCreate, SweepList, SweepRead
from service.sweeps.tables import SWEEP_TERMINAL, TRIAL_ACTIVE

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], route_class=GuardedRoute)

EVENTS_POLL_SECONDS = 0.25
SSE_KEEPALIVE_SECONDS = 15.0


@router.post("", status_code=202, response_model=SweepRead,
             responses={404: {"description": "Unknown data set"},
                        422: {"description": "Invalid space, budget, metric, validation data or limit"}})
def create_sweep(body: SweepCreate, request: Request, response: Response, session: SessionDep, owner: OwnerDep,
                 settings: SettingsDep, storage: StorageDep) -> SweepRead:
    """Start a hyper-parameter sweep: its trials are jobs, proposed by Optuna and run by the workers."""
    sweep = service.create(session, settings, owner=owner, body=body, storage=storage)
    request.app.state.sweep_driver.wake()  # create_app builds it
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return service.view(sweep, [])


@router.get("", response_model=SweepList)
def list_sweeps(session: SessionDep, owner: OwnerDep, page: PageDep,
                status: Literal["running", "succeeded", "failed", "cancelled"] | None = None) -> SweepList:
    """List sweeps, newest first (without their trials), optionally only those with ``status``."""
    items, total = service.list_(session, owner=owner, status=status, limit=page.limit, offset=page.offset)
    return SweepList(items=items, total=total)


@router.get("/{sweep_id}", response_model=SweepRead, responses={404: {"description": "Unknown sweep"}})
def get_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep) -> SweepRead:
    """Status, trials ranked by the metric with their parameters, the best model, parameter importances."""
    return service.read(session, owner=owner, sweep_id=sweep_id)


@router.post("/{sweep_id}/cancel", response_model=SweepRead,
             responses={404: {"description": "Unknown sweep"}, 409: {"description": "The sweep already ended"}})
def cancel_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep, executor: ExecutorDep) -> SweepRead:
    """Stop the sweep: no new trials; every running trial stops within one minibatch."""
    service.cancel(session, executor, owner=owner, sweep_id=sweep_id)
    return service.read(session, owner=owner, sweep_id=sweep_id)


@router.delete("/{sweep_id}", status_code=204,
               responses={404: {"description": "Unknown sweep"}, 409: {"description": "The sweep is running"}})
def delete_sweep(sweep_id: str, request: Request, session: SessionDep, owner: OwnerDep,
                 storage: StorageDep) -> Response:
    """Delete a finished sweep with its trials' jobs and networks (trained models stay)."""
    service.delete(session, storage, owner=owner, sweep_id=sweep_id, model_cache=request.app.state.model_cache)
    return Response(status_code=204)


SSE_EXAMPLE = ('id: 0\nevent: trial\ndata: {"number":0,"status":"complete","value":0.96,"epoch":10,...}\n\n'
               'event: end\ndata: {"id":"5e1c...","status":"succeeded","best_trial":0,...}\n\n')


def _sse(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def _ended(sweep) -> list:
    """The sweep's ended trials in the order they ended (``finished_at``, then number): the stream's order."""
    ended = [t for t in sweep.trials if t.status not in TRIAL_ACTIVE]
    return sorted(ended, key=lambda t: (t.finished_at.timestamp() if t.finished_at else float("inf"), t.number))


def _already_sent(sweep, last_id: str | None) -> set[int]:
    """The trial numbers a reconnecting client has: every trial that ended up to and including the one named by
    ``Last-Event-ID`` (a trial number). An id that is not the number of an ended trial replays every trial."""
    if not (last_id and last_id.isascii() and last_id.isdigit()):
        return set()
    order = [t.number for t in _ended(sweep)]
    number = int(last_id)
    return set(order[:order.index(number) + 1]) if number in order else set()


@router.get("/{sweep_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
                             "description": "One `trial` event per trial that ends, in the order they end (id: "
                                            "its number; reconnect with `Last-Event-ID`), then `end`."},
                       404: {"description": "Unknown sweep"},
                       429: {"description": "Too many open event streams (the job streams' caps)"}})
async def sweep_events(sweep_id: str, request: Request, owner: OwnerDep) -> StreamingResponse:
    """Server-sent events: a `trial` event (the trial's JSON) when each trial ends, `end` with the sweep. A client
    that reconnects with `Last-Event-ID` (the last trial number it got) gets only the trials that ended after it."""
    sessions = request.app.state.sessionmaker

    def poll() -> object:
        with sessions() as session:
            return service.read(session, owner=owner, sweep_id=sweep_id)

    hub = request.app.state.stream_hub  # the job streams' caps: one count per tenant for both kinds
    hub.count(owner, poll="GET /v1/sweeps/{id}")  # 429 over MLP_MAX_STREAMS_PER_TENANT or MLP_MAX_STREAMS
    try:
        first = await run_in_threadpool(poll)  # 404 before the stream starts
    except BaseException:
        hub.uncount(owner)
        raise
    sent = _already_sent(first, request.headers.get("last-event-id"))

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in _events(first):
                yield chunk
        finally:
            hub.uncount(owner)

    recheck = max(float(request.app.state.settings.api_key_recheck_seconds), 0.05)

    async def _events(sweep) -> AsyncIterator[bytes]:
        last = last_check = time.monotonic()
        while True:
            for t in _ended(sweep):
                if t.number not in sent:
                    sent.add(t.number)
                    last = time.monotonic()
                    yield _sse("trial", t.model_dump(mode="json"), t.number)
            if sweep.status in SWEEP_TERMINAL:
                yield _sse("end", sweep.model_dump(mode="json", exclude={"trials"}))
                return
            if time.monotonic() - last > SSE_KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last = time.monotonic()
            await anyio.sleep(min(EVENTS_POLL_SECONDS, recheck))
            if await request.is_disconnected():
                return
            if time.monotonic() - last_check >= recheck:  # a revoked key ends its streams, as a job stream's
                last_check = time.monotonic()
                if not await still_authorised(request, owner):
                    yield _sse("error", {"detail": "the API key was revoked"})
                    return
            sweep = await run_in_threadpool(poll)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
